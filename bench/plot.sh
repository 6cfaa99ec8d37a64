#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Draws shmbus-bench results with gnuplot.
#   bench/plot.sh RESULTS.csv OUTDIR
# Writes OUTDIR/latency.{svg,png}  one-way p50 against payload size (log-log),
#                                   one line per transport and mode: busy rows
#                                   (shmbus, floor, iceoryx) and blocking rows
#                                   (shmbus, futex_floor, pipe, uds, mqueue, zmq);
#                                   the floors have one point (64 B)
#        OUTDIR/percentiles.{svg,png}  p50 .. p99.9 and max at 64 B per transport
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 RESULTS.csv OUTDIR" >&2
  exit 2
fi
csv=$1
out=$2
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
[ -r "$csv" ] || { echo "plot.sh: cannot read $csv" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# One data file per latency series (busy and blocking rows with results).
awk -F, -v dir="$tmp" 'NR > 1 && ($2 == "busy" || $2 == "blocking") && $4 > 0 {
  f = dir "/" $1 "-" $2 ".dat"; print $3, $5 > f; files[f] = 1 }
  END { for (f in files) print f > (dir "/series") }' "$csv"
[ -s "$tmp/series" ] || { echo "plot.sh: no latency rows in $csv" >&2; exit 1; }
sort -o "$tmp/series" "$tmp/series"
awk -F, 'NR > 1 && $3 == 64 && $4 > 0 && ($2 == "busy" || $2 == "blocking") {
  print $1 "/" $2, $5, $6, $7, $8, $9 }' "$csv" > "$tmp/p64.dat"

plots=""
while read -r f; do
  name=$(basename "$f" .dat)
  plots="${plots}${plots:+, }'$f' using 1:2 with linespoints lw 2 title '$name'"
done < "$tmp/series"

for term in svg png; do
  # noenhanced: names such as futex_floor are not subscripts.
  if [ "$term" = svg ]; then setterm="set terminal svg size 900,560 dynamic noenhanced background '#ffffff'"
  else setterm="set terminal pngcairo size 900,560 noenhanced"; fi
  if [ "$term" = png ] && ! gnuplot -e 'set terminal pngcairo' 2>/dev/null; then
    setterm="set terminal png size 900,560"
  fi
  gnuplot <<GP
$setterm
set output '$out/latency.$term'
set title 'One-way latency (p50) against payload size'
set logscale xy
set xlabel 'payload (bytes)'
set ylabel 'one-way latency p50 (ns)'
set grid
set key outside right
set format x '%.0s%cB'
plot $plots
GP
  gnuplot <<GP
$setterm
set output '$out/percentiles.$term'
set title 'Latency profile at 64 B (ns, log scale)'
set logscale y
set style data histogram
set style histogram cluster gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set grid ytics
set key outside right
plot '$tmp/p64.dat' using 2:xtic(1) title 'p50', '' using 3 title 'p90', '' using 4 title 'p99', '' using 5 title 'p99.9', '' using 6 title 'max'
GP
done
echo "plot.sh: wrote $out/latency.svg, $out/latency.png, $out/percentiles.svg, $out/percentiles.png"
