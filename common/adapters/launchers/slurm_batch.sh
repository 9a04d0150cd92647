#!/bin/sh
# PipelineJobs' batch script, submitted by the slurm launcher for every job
# (common/adapters/launchers/slurm.py).
#
# Nothing about a job is written in here. The command it runs is this script's
# arguments -- the pipeline component's argv, as sbatch was given it, run as "$@", so
# no value in it is read by a shell -- and the job's coordinates are its environment
# (the callback URL with the job's token and nonce, a report body, maxRunTime).
#
# It reports RUNNING, runs the command, and reports FINISHED (exit code 0) or FAILED
# (the exit code) to the job's callback URL, as the local launcher's supervisor does.
# Slurm counts time limits in whole minutes (and finds them up to 30 s late), so the
# exact maxRunTime is held here: past it the command is stopped and the job reported
# FAILED, naming TIMEOUT. When Slurm itself ends the job (scancel, its own time limit,
# preemption: it sends TERM) nothing is reported from here: Slurm's state says why, and
# the reconciler records it.

job_id=${SLURM_JOB_ID:-}
case $job_id in '' | *[!0-9]*) job_id=unknown ;; esac
ended_by=
trap 'ended_by=slurm' TERM INT
trap 'ended_by=limit' USR1

# report STATUS [JSON members to add]: POST an Agave-shaped status to the callback URL.
report() {
    [ -n "${PIPELINEJOBS_CALLBACK_URL:-}" ] || return 0
    body="${PIPELINEJOBS_REPORT_BODY:-{}\"status\":\"$1\",\"slurmJobId\":\"$job_id\"${2:+,$2}}"
    curl --silent --show-error --fail --output /dev/null --max-time 30 \
        --retry 10 --retry-connrefused --retry-delay 5 \
        --header 'Content-Type: application/json' --data-binary "$body" \
        "${PIPELINEJOBS_CALLBACK_URL}&status=$1" ||
        echo "pipelinejobs: the $1 report of Slurm job $job_id could not be sent" >&2
}

"$@" &
child=$!
watchdog=
limit=${PIPELINEJOBS_MAX_RUN_SECONDS:-0}
case $limit in '' | *[!0-9]*) limit=0 ;; esac
if [ "$limit" -gt 0 ]; then
    (sleep "$limit" && kill -USR1 $$) &
    watchdog=$!
fi
report RUNNING
# wait returns when the command ends, or at once when a trapped signal arrives.
[ -n "$ended_by" ] || wait "$child"
code=$?
if [ -z "$ended_by" ] && [ "$code" -gt 128 ]; then
    # Killed by a signal. When Slurm ends a job it signals every process of it, in no
    # set order: its TERM to this script may be a moment behind the command's. Give it
    # a second to land (a wait, which the signal ends at once) before speaking, so a job
    # Slurm ended is told by Slurm's state.
    sleep 1 &
    pause=$!
    wait "$pause"
    kill "$pause" 2>/dev/null
fi

case $ended_by in
slurm)
    exit 143
    ;;
limit)
    trap '' TERM
    kill -TERM 0 2>/dev/null # the command and all it started (this process group)
    report FAILED "\"exitCode\":null,\"error\":${PIPELINEJOBS_TIMEOUT_ERROR:-\"TIMEOUT\"}"
    exit 124
    ;;
esac

if [ "$code" -eq 0 ]; then
    report FINISHED '"exitCode":0'
elif [ "$code" -gt 128 ]; then
    report FAILED "\"exitCode\":$code,\"error\":\"the job was killed by signal $((code - 128))\""
else
    report FAILED "\"exitCode\":$code,\"error\":\"the job exited with code $code\""
fi
# Whatever the command left running in the background (and the watchdog) ends with it.
trap '' TERM
kill -TERM 0 2>/dev/null
exit "$code"
