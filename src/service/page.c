/* The operator page: GET / (HTML and a script) and GET /v1/operator (its
 * JSON), answered to the machine's own loopback address only.  It shows
 * what the operator runs: jobs by short id, their state, queue position,
 * progress, phase times and memory estimates, the budget and what running
 * children hold.  No token, and nothing a client uploaded or could decrypt. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "service/internal.h"

const char svc_page_html[] =
    "<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>BlindTuner service</title>\n"
    "<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}th{background:#f4f4f4}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}</style></head>\n"
    "<body><h1>BlindTuner service</h1>\n"
    "<p id=summary>loading&hellip;</p>\n"
    "<table id=jobs><thead><tr><th>job</th><th>state</th><th>queue</th><th>epoch</th><th>progress</th>"
    "<th class=num>ETA s</th><th class=num>last epoch s</th><th class=num>bootstrap s</th>"
    "<th class=num>memory GiB</th><th>inference</th></tr></thead><tbody></tbody></table>\n"
    "<p>Encrypted jobs only: the service holds evaluation keys and ciphertexts, never a secret key or a "
    "decrypted value. API: <code>/v1/</code>.</p>\n"
    "<script>\n"
    "function cell(tr, text, cls) { const td = document.createElement('td'); td.textContent = text;"
    " if (cls) td.className = cls; tr.appendChild(td); }\n"
    "async function refresh() {\n"
    "  try {\n"
    "    const r = await fetch('/v1/operator', {cache: 'no-store'});\n"
    "    const d = await r.json();\n"
    "    document.getElementById('summary').textContent = d.jobs.length + ' jobs, ' + d.running + ' running, ' +"
    " d.queued + ' queued; memory budget ' + d.budget_gib + ' GiB, ' + d.reserved_gib + ' GiB reserved; ' +"
    " d.workers + ' workers';\n"
    "    const body = document.querySelector('#jobs tbody');\n"
    "    body.replaceChildren();\n"
    "    for (const j of d.jobs) {\n"
    "      const tr = document.createElement('tr'); tr.className = 'job'; tr.dataset.id = j.id;\n"
    "      const p = j.progress || {};\n"
    "      const last = j.epochs.length ? j.epochs[j.epochs.length - 1] : null;\n"
    "      cell(tr, j.id); cell(tr, j.state); cell(tr, j.queue_position || '');\n"
    "      cell(tr, j.epochs_done + ' / ' + j.options.epochs);\n"
    "      cell(tr, p.phase ? p.phase + ' ' + p.step + '/' + p.steps : '');\n"
    "      cell(tr, p.eta_s >= 0 ? p.eta_s : '', 'num');\n"
    "      cell(tr, last ? (last.train_s + last.validation_s).toFixed(1) : '', 'num');\n"
    "      cell(tr, last ? last.bootstrap_s.toFixed(1) : '', 'num');\n"
    "      cell(tr, j.memory_estimate_gib, 'num'); cell(tr, j.infer.state);\n"
    "      body.appendChild(tr);\n"
    "    }\n"
    "    document.body.dataset.ready = '1';\n"
    "  } catch (e) { document.getElementById('summary').textContent = 'cannot reach the service: ' + e; }\n"
    "}\n"
    "refresh(); setInterval(refresh, 2000);\n"
    "</script></body></html>\n";
const size_t svc_page_html_len = sizeof svc_page_html - 1;

json_object *svc_operator_json(bt_service *s) {
  json_object *o = json_object_new_object(), *jobs = json_object_new_array();
  char ids[256][SVC_ID_HEX];
  int running[256], n = 0, queued = 0;
  pthread_mutex_lock(&s->mu);
  for (svc_job *j = s->jobs; j; j = j->next) {
    queued += !j->child && (j->state == SVC_QUEUED || j->infer == SVC_INFER_QUEUED);
    if (n == 256) continue; /* the page shows the 256 newest */
    json_object *js = svc_status_json(s, j);
    json_object_object_del(js, "uploads");
    json_object_object_del(js, "error"); /* a message may name a client's file */
    json_object_array_add(jobs, js);
    memcpy(ids[n], j->id, SVC_ID_HEX);
    running[n++] = j->child != 0 && !j->child_infer;
  }
  const double budget = s->budget, reserved = s->reserved;
  const int nrunning = s->running, workers = s->o.workers;
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < n; i++) {
    json_object *js = json_object_array_get_idx(jobs, (size_t)i);
    svc_status_add_files(s, ids[i], running[i], js);
    /* the page names jobs by their first 8 hex digits */
    json_object_object_add(js, "id", json_object_new_string_len(ids[i], 8));
  }
  json_object_object_add(o, "jobs", jobs);
  json_object_object_add(o, "running", json_object_new_int(nrunning));
  json_object_object_add(o, "queued", json_object_new_int(queued));
  json_object_object_add(o, "workers", json_object_new_int(workers));
  json_object_object_add(o, "budget_gib", json_object_new_double(round(budget / 1073741824.0 * 10) / 10));
  json_object_object_add(o, "reserved_gib", json_object_new_double(round(reserved / 1073741824.0 * 10) / 10));
  return o;
}
