#!/bin/bash
# submit.sh — run a vitq experiment on a Slurm cluster: an array of N shards, then a merge job.
#
#   experiments/slurm/submit.sh [OPTIONS] FILE.ini N [SBATCH_OPTION...]
#
#   --output DIR   the merged run folder (default: the INI's [run] output, read from --dry-run);
#                  the shards write DIR.shards/shard-K-of-N
#   --tasks LIST   array indices to (re)submit, e.g. 3,5 or 0-7 (default 0-(N-1)); N stays the same
#   --no-check     do not validate the INI with `vitq run --dry-run` here first (needs --output)
#   --print        print the two sbatch commands instead of submitting them
#
# SBATCH_OPTIONs (e.g. -p cpu -t 12:00:00 -c 4 --mem=16G) go to the array job only, after the
# defaults in run_array.sbatch; partition/account for both jobs: set SBATCH_PARTITION /
# SBATCH_ACCOUNT in the environment (sbatch reads them). Run it from the folder the INI's relative
# paths are relative to (the jobs start there). VITQ=/path/to/vitq selects the binary (default: the
# vitq in PATH, else build/vitq); it must be reachable from every node.
#
# Prints the two job ids; exit 0 when both were submitted.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "submit.sh: $*" >&2; exit 1; }
usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

OUT='' TASKS='' CHECK=1 PRINT=0
while [ $# -gt 0 ]; do
    case $1 in
        --output) [ $# -ge 2 ] || usage; OUT=$2; shift 2 ;;
        --tasks) [ $# -ge 2 ] || usage; TASKS=$2; shift 2 ;;
        --no-check) CHECK=0; shift ;;
        --print) PRINT=1; shift ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) die "unknown option '$1' (submit.sh options come before FILE.ini; sbatch options after N)" ;;
        *) break ;;
    esac
done
[ $# -ge 2 ] || usage
INI=$1 N=$2
shift 2
case $N in '' | *[!0-9]* | 0) die "N must be a positive integer, got '$N'" ;; esac
[ -f "$INI" ] || die "$INI: no such file"
case $TASKS in *[!0-9,-]*) die "--tasks '$TASKS': expected indices and ranges such as 3,5 or 0-7" ;; esac
TASKS=${TASKS:-0-$((N - 1))}

if [ -z "${VITQ:-}" ]; then
    if command -v vitq >/dev/null; then VITQ=$(command -v vitq)
    elif [ -x build/vitq ]; then VITQ=$PWD/build/vitq
    else die "no vitq in PATH and no build/vitq; set VITQ=/path/to/vitq"
    fi
fi
case $VITQ in /*) ;; *) VITQ=$PWD/$VITQ ;; esac
export VITQ

# Validate the whole experiment here (INI, plugins, models, datasets) before queueing hours of jobs,
# and learn the output folder from the dry run's last line: "N cells (...) -> DIR; nothing run (--dry-run)".
if [ "$CHECK" = 1 ]; then
    dry=$("$VITQ" run "$INI" --dry-run) || die "$INI does not validate (vitq run $INI --dry-run)"
    last=$(printf '%s\n' "$dry" | tail -n 1)
    ncells=${last%% cells*}
    if [ -z "$OUT" ]; then
        OUT=$(printf '%s\n' "$last" | sed -n 's/^.* -> \(.*\); nothing run (--dry-run)$/\1/p')
        [ -n "$OUT" ] || die "cannot read the output folder from '$last'; give --output DIR"
    fi
    case $ncells in *[!0-9]* | '') ;; *)
        [ "$N" -le "$ncells" ] || echo "submit.sh: note: $N shards for $ncells cells; shards past $((ncells - 1)) run nothing" >&2 ;;
    esac
fi
[ -n "$OUT" ] || die "--no-check needs --output DIR"
OUT=$(realpath -m -- "$OUT")
INI=$(realpath -- "$INI")

array=(sbatch --parsable --array="$TASKS" "$@" "$HERE/run_array.sbatch" "$INI" "$N" "$OUT")
merge=(sbatch --parsable --kill-on-invalid-dep=yes "$HERE/merge.sbatch" "$N" "$OUT")
if [ "$PRINT" = 1 ]; then
    echo "VITQ=$VITQ ${array[*]}"
    echo "VITQ=$VITQ ${merge[0]} --dependency=afterok:ARRAY_JOB_ID ${merge[*]:1}"
    exit 0
fi
command -v sbatch >/dev/null || die "sbatch not found (run this on a Slurm login node)"
A=$("${array[@]}") || die "array submission failed"
A=${A%%;*} # --parsable prints JOBID or JOBID;CLUSTER
M=$("${merge[0]}" --dependency="afterok:$A" "${merge[@]:1}") || die "merge submission failed (array job $A is queued)"
M=${M%%;*}
echo "array job $A (tasks $TASKS of $N shards) -> $OUT.shards/"
echo "merge job $M (afterok:$A) -> $OUT"
