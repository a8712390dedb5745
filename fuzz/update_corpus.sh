#!/usr/bin/env bash
# Regenerates the committed seed corpora under fuzz/corpus/ (docs/FUZZING.md):
#   fuzz/update_corpus.sh BUILD_DIR
# BUILD_DIR is a fuzz build (-DBT_FUZZ=ON) with make_corpus and make_seeds
# built.  Seeds come from the project's own writers (make_seeds,
# make_corpus) and from the test fixtures in tests/data/vision; nothing is
# downloaded.  Every key comes from a fixed seed.  Reproducers of fixed
# findings are kept as regress-* in their target's corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz/update_corpus.sh BUILD_DIR}
out=fuzz/corpus
fix=tests/data/vision
targets="fuzz_io fuzz_stream fuzz_pipeline fuzz_decrypt fuzz_report fuzz_npy fuzz_idx fuzz_safetensors fuzz_image"
# reproducers of fixed findings (regress-*) are kept; the rest is remade
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/keep"
for t in $targets; do
  for f in "$out/$t"/regress-*; do [ -e "$f" ] && mkdir -p "$tmp/keep/$t" && cp "$f" "$tmp/keep/$t/"; done
  rm -rf "${out:?}/$t" && mkdir -p "$out/$t"
  [ -d "$tmp/keep/$t" ] && cp "$tmp/keep/$t"/* "$out/$t/"
done

# fuzz_io: the containers of INSECURE-n10 under 64 KiB (the switch and eval
# keys are added by CI from make_corpus at run time: too large to commit)
mkdir "$tmp/io"
"$build/make_corpus" "$tmp/io"
for f in "$tmp"/io/seed-*; do
  [ "$(stat -c %s "$f")" -le 65536 ] && cp "$f" "$out/fuzz_io/"
done

# the key material, pipeline files, records, .npy and plain IDX seeds
"$build/make_seeds" "$out"

# vision fixtures: .npz (selector 2 = split train, 3 = split test)
{ printf '\002'; cat "$fix/tiny_grey.npz"; } > "$out/fuzz_npy/grey-npz"
{ printf '\003'; cat "$fix/tiny_rgb.npz"; } > "$out/fuzz_npy/rgb-npz-test"
# gzip'd IDX pair: u16 length of the images file, images, labels
il=$(stat -c %s "$fix/tiny-images-idx3-ubyte.gz")
{ printf "\\$(printf %03o $((il & 255)))\\$(printf %03o $((il >> 8)))"
  cat "$fix/tiny-images-idx3-ubyte.gz" "$fix/tiny-labels-idx1-ubyte.gz"; } > "$out/fuzz_idx/gzip"
cp "$fix/datasets.io.safetensors" "$out/fuzz_safetensors/small.safetensors"
cp "$fix/deit_hf_distilled_f32.safetensors" "$out/fuzz_safetensors/vit.safetensors"
for f in rgb.png grey.png palette.png photo.jpg greyjpg.jpg; do cp "$fix/$f" "$out/fuzz_image/"; done
cp "$fix/folder/cat/1.png" "$out/fuzz_image/tiny.png"
du -sh "$out"/*
