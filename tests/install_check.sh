#!/bin/sh
# The installed package as a user sees it: `cmake --install` into a fresh
# prefix, then a program outside the tree built with nothing but
# `pkg-config blindtuner`, once against libblindtuner.so and once against
# libblindtuner.a.  Also checks that every declaration of the installed
# headers is BT_API and that the shared library exports exactly those.
# usage: install_check.sh CMAKE BUILD_DIR CC PKG_CONFIG WORK_DIR
set -eu
CMAKE=$1 BUILD=$2 CC=$3 PKG_CONFIG=$4 W=$5
rm -rf "$W"
mkdir -p "$W"
P=$W/prefix
run() { echo "+ $*"; "$@"; }
run "$CMAKE" --install "$BUILD" --prefix "$P" >"$W/install.log"
PC=$(find "$P" -name blindtuner.pc)
test -n "$PC" || { echo "no blindtuner.pc installed"; exit 1; }
PKG_CONFIG_PATH=$(dirname "$PC")
export PKG_CONFIG_PATH
LIBDIR=$("$PKG_CONFIG" --variable=libdir blindtuner)

cat >"$W/prog.c" <<'PROG'
#include <stdio.h>
#include <blindtuner/ckks.h>
int main(void) {
  bt_ckks_literal lit;
  bt_ckks_params *p = NULL;
  if (bt_init() != BT_OK || bt_ckks_preset("INSECURE-n12", &lit) != BT_OK ||
      bt_ckks_params_new(&lit, BT_ALLOW_INSECURE, &p) != BT_OK) {
    fprintf(stderr, "%s\n", bt_last_error());
    return 1;
  }
  printf("logn %d\n", bt_ckks_logn(p));
  bt_ckks_params_free(p);
  return 0;
}
PROG

# shared
run "$CC" -std=c11 -Wall -Wextra -Werror -o "$W/prog" "$W/prog.c" $("$PKG_CONFIG" --cflags --libs blindtuner)
out=$(LD_LIBRARY_PATH=$LIBDIR "$W/prog")
test "$out" = "logn 12" || { echo "shared: got '$out'"; exit 1; }
readelf -d "$W/prog" | grep -q 'NEEDED.*libblindtuner\.so' || { echo "shared: not linked to libblindtuner.so"; exit 1; }
echo "shared: $out"

# static: libblindtuner.a (its dependencies stay shared), from --static --libs
libs=""
for f in $("$PKG_CONFIG" --static --libs blindtuner); do
  if [ "$f" = -lblindtuner ]; then f=-l:libblindtuner.a; fi
  libs="$libs $f"
done
run "$CC" -std=c11 -Wall -Wextra -Werror -o "$W/prog_static" "$W/prog.c" $("$PKG_CONFIG" --cflags blindtuner) $libs
out=$("$W/prog_static")
test "$out" = "logn 12" || { echo "static: got '$out'"; exit 1; }
if readelf -d "$W/prog_static" | grep -q 'NEEDED.*libblindtuner'; then
  echo "static: still needs libblindtuner.so"
  exit 1
fi
echo "static: $out"

# every top-level declaration of the public headers is BT_API (continuation
# lines are indented; static inline functions are not exported)
missing=$(grep -nE '^[A-Za-z_]' "$P"/include/blindtuner/*.h |
  grep -vE '^[^:]*:[0-9]+:(BT_API|typedef|static|extern|struct|enum|union)[[:space:]]' || true)
if [ -n "$missing" ]; then
  echo "declarations without BT_API:"
  echo "$missing" | sed "s|^$P/include/||"
  exit 1
fi

# exports: what the installed headers declare BT_API (functions, and data
# declared `BT_API extern`), nothing else
nm -D --defined-only "$LIBDIR/libblindtuner.so" |
  awk '$2 ~ /^[TDBR]$/ && $3 != "_init" && $3 != "_fini" {print $3}' | sort >"$W/exported"
grep -hv '^[[:space:]]*#' "$P"/include/blindtuner/*.h | tr '\n' ' ' |
  sed 's|/\*[^*]*\*\+\([^/*][^*]*\*\+\)*/||g' | tr ';' '\n' | grep 'BT_API' | sed 's/.*BT_API//' |
  while IFS= read -r decl; do
    case $decl in
      *'('*) echo "$decl" | sed 's/(.*//; s/.*[ *]//' ;;
      *) echo "$decl" | sed 's/\[[^]]*\]//g' | tr ',' '\n' | sed 's/ *$//; s/.*[ *]//' ;;
    esac
  done | sort -u >"$W/declared"
if ! cmp -s "$W/exported" "$W/declared"; then
  echo "exported but not declared BT_API:"
  comm -23 "$W/exported" "$W/declared"
  echo "declared BT_API but not exported:"
  comm -13 "$W/exported" "$W/declared"
  exit 1
fi
echo "exports: $(wc -l <"$W/exported") symbols, each declared BT_API"
