#!/bin/bash
# runs each line "NAME JSON" of queue.txt (or $1) not yet in results/; re-reads the file after each run
HERE=$(cd "$(dirname "$0")" && pwd)
export RECIPE_OUT=${RECIPE_OUT:-/tmp/rankdistill-recipe-search} IR_DATASETS_HOME=${IR_DATASETS_HOME:-$HERE/../../out/ir_datasets}
PY=${PY:-$HERE/../../.venv/bin/python}
mkdir -p "$RECIPE_OUT/results" && cd "$RECIPE_OUT"
QUEUE=${1:-$HERE/queue.txt}
[ -f results/_baselines.json ] || $PY "$HERE/baselines.py" >> queue.log 2>&1
while true; do
  line=$(while read -r n j; do [ -n "$n" ] && [ ! -f results/$n.json ] && [ ! -f failed-$n ] && { echo "$n $j"; break; }; done < "$QUEUE")
  [ -z "$line" ] && break
  n=${line%% *}; j=${line#* }
  echo "$(date +%T) start $n" >> queue.log
  $PY "$HERE/exp.py" "$n" "$j" > logs-$n.txt 2>&1 || touch failed-$n
  echo "$(date +%T) end $n $(tail -1 logs-$n.txt)" >> queue.log
done
echo "$(date +%T) queue empty" >> queue.log
