#!/usr/bin/env bash
# slurm_local.sh — a real one-node Slurm cluster on localhost, for the scale-out tests (issue 16).
#
#   tests/scaleout/slurm_local.sh start    munged + slurmctld + slurmd, waits until the node is idle
#   tests/scaleout/slurm_local.sh stop     cancels jobs, stops the daemons, removes the state folder
#   tests/scaleout/slurm_local.sh status   exit 0 when the cluster answers with the node up, 3 when down
#   tests/scaleout/slurm_local.sh env      prints `export SLURM_CONF=...` for eval (sbatch, squeue, ...)
#
# Everything is private to one state folder, $VITQ_SLURM_DIR (default /tmp/vitq-slurm-local): its own
# MUNGE key, munged socket (slurm.conf AuthInfo=socket=...), slurm.conf, spool, state, logs, and two free
# TCP ports picked at start. Nothing in /etc is read or written, a system munged or slurmd (if any) is
# neither used nor disturbed, and no systemd is needed: the daemons are started directly and stopped by
# the pids in their pid files. Needs root (SlurmUser=root, the jobs run as root).
#
# start and stop are idempotent. When the cluster cannot be brought up here (not root, a program
# missing, a daemon that will not start) start prints ONE line "slurm_local: cannot start: REASON" on
# stderr, leaves nothing running and exits 77, so a test can count it as skipped with that reason.
# Exit 1 is a real failure (bad usage, or every daemon up but the node never became idle).
set -u

SKIP=77
D=${VITQ_SLURM_DIR:-${TMPDIR:-/tmp}/vitq-slurm-local}
CONF=$D/slurm.conf
MSOCK=$D/munge/munge.socket.2
WAIT=${VITQ_SLURM_TIMEOUT:-30}
NODE=$(hostname -s 2>/dev/null || hostname)
CLUSTER=vitqlocal
PART=debug

say() { printf 'slurm_local: %s\n' "$*" >&2; }

# pid from a pid file, if that process is alive
alive_pid() {
    local p
    [ -r "$1" ] || return 1
    p=$(tr -dc 0-9 <"$1")
    [ -n "$p" ] && running "$p" && echo "$p"
}

# slurmstepd processes of THIS cluster: they inherit SLURM_CONF=$CONF from our slurmd
our_stepds() {
    local e p c
    for e in /proc/[0-9]*/comm; do
        p=${e#/proc/}; p=${p%/comm}
        c=; read -r c 2>/dev/null <"$e"
        [ "$c" = slurmstepd ] || continue
        tr '\0' '\n' 2>/dev/null <"/proc/$p/environ" | grep -qx "SLURM_CONF=$CONF" && echo "$p"
    done
}

# every descendant of the given pids (children first found through /proc/PID/status PPid)
descendants() {
    local s p pp kids=() out=() seen=" $* " changed=1
    declare -A parent
    for s in /proc/[0-9]*/status; do
        p=${s#/proc/}; p=${p%/status}
        pp=$(awk '/^PPid:/ { print $2; exit }' "$s" 2>/dev/null)
        [ -n "$pp" ] && parent[$p]=$pp
    done
    while [ $changed = 1 ]; do
        changed=0
        for p in "${!parent[@]}"; do
            case $seen in *" $p "*) continue ;; esac
            case $seen in *" ${parent[$p]} "*) seen+="$p "; out+=("$p"); changed=1 ;; esac
        done
    done
    [ ${#out[@]} -gt 0 ] && printf '%s\n' "${out[@]}"
}

# a process that runs (a zombie waiting for init to reap it does not count)
running() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}

# TERM, wait up to 5 s, then KILL; only the pids given
stop_pids() {
    local p i
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null
    for i in $(seq 50); do
        for p in "$@"; do running "$p" && break; p=; done
        [ -z "${p:-}" ] && return 0
        sleep 0.1
    done
    kill -KILL "$@" 2>/dev/null
    sleep 0.2
}

do_stop() {
    local p pids=() kids=()
    if [ -f "$CONF" ] && alive_pid "$D/slurmctld.pid" >/dev/null; then
        # cancel every job so slurmd's proctrack kills job processes, give it a moment
        SLURM_CONF=$CONF timeout 10 scancel --quiet -p "$PART" 2>/dev/null
        for _ in $(seq 30); do
            [ -z "$(SLURM_CONF=$CONF timeout 5 squeue -h -t R,CG -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    for p in slurmd slurmctld; do
        alive_pid "$D/$p.pid" >/dev/null && pids+=("$(alive_pid "$D/$p.pid")")
    done
    stop_pids "${pids[@]}"
    # slurmstepd outlives slurmd by design: when jobs survived (slurmctld was dead, scancel could not
    # run), kill the job processes under our slurmstepds, then the slurmstepds
    mapfile -t pids < <(our_stepds)
    if [ ${#pids[@]} -gt 0 ]; then
        mapfile -t kids < <(descendants "${pids[@]}")
        kill -KILL "${kids[@]}" "${pids[@]}" 2>/dev/null # slurmstepd ignores SIGTERM
        sleep 0.2
    fi
    p=$(alive_pid "$D/munge/munged.pid") && stop_pids "$p"
    if [ -f "$D/.slurm_local" ]; then rm -rf -- "$D"; fi # only a folder this script made
}

is_up() {
    [ -f "$CONF" ] && alive_pid "$D/slurmctld.pid" >/dev/null && alive_pid "$D/slurmd.pid" >/dev/null &&
        alive_pid "$D/munge/munged.pid" >/dev/null || return 1
    case $(SLURM_CONF=$CONF timeout 5 sinfo -h -n "$NODE" -o %t 2>/dev/null) in
        idle*|mix*|alloc*|comp*) return 0 ;;
    esac
    return 1
}

# a TCP port nobody listens on (and not $1)
free_port() {
    local p i
    for i in $(seq 200); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        [ "$p" = "${1:-}" ] && continue
        if command -v ss >/dev/null; then
            [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && { echo "$p"; return 0; }
        elif ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    return 1
}

# cannot start: one line, clean up, exit 77
skip() {
    say "cannot start: $*"
    do_stop
    exit $SKIP
}

# last error-looking line of a daemon's log (or else of its stderr), to name why it died
why() {
    local l f
    for f in "$@"; do
        l=$(grep -aE 'error|fatal|Error|Fatal' "$f" 2>/dev/null | grep -av 'state file\|backup state' | tail -n 1)
        [ -n "$l" ] || l=$(tail -n 1 "$f" 2>/dev/null)
        [ -n "$l" ] && break
    done
    printf '%s' "${l:-no log}" | tr -s '\t ' ' ' | cut -c1-240
}

do_start() {
    local t0 c key line hw p1 p2 i st p
    t0=$(date +%s.%N)
    if is_up; then
        say "already up (SLURM_CONF=$CONF)"
        return 0
    fi
    [ "$(id -u)" = 0 ] || { say "cannot start: needs root (SlurmUser=root, jobs run as root)"; exit $SKIP; }
    for c in munged munge unmunge slurmctld slurmd slurmstepd sinfo sbatch squeue scancel scontrol; do
        command -v "$c" >/dev/null || { say "cannot start: '$c' not found (apt-get install slurm-wlm munge)"; exit $SKIP; }
    done
    do_stop # leftovers of a half-started or crashed cluster
    [ ! -e "$D" ] || { say "cannot start: $D exists and was not made by slurm_local.sh"; exit $SKIP; }
    mkdir -p "$D" && chmod 711 "$D" && : >"$D/.slurm_local" || skip "cannot create $D"
    mkdir -m 755 "$D/munge" && mkdir -m 700 "$D/ctld" "$D/spool" "$D/log" || skip "cannot create folders in $D"

    # MUNGE: private key (created here), private socket; munged wants the socket folder world-executable
    key=$D/munge/munge.key
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile="$key" >/dev/null 2>&1
    fi
    [ -s "$key" ] || { head -c 1024 /dev/urandom >"$key" && chmod 600 "$key"; } || skip "cannot create a munge key"
    munged --socket="$MSOCK" --key-file="$key" --log-file="$D/log/munged.log" \
        --pid-file="$D/munge/munged.pid" --seed-file="$D/munge/munged.seed" >/dev/null 2>&1 ||
        skip "munged: $(why "$D/log/munged.log")"
    munge -n -S "$MSOCK" 2>/dev/null | unmunge -S "$MSOCK" >/dev/null 2>&1 ||
        skip "munge credential round trip failed: $(why "$D/log/munged.log")"

    # the real hardware of this node, as slurmd sees it
    line=$(slurmd -C 2>/dev/null | head -n 1)
    hw=$(printf '%s\n' "$line" | tr ' ' '\n' |
        grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore|RealMemory)=' | tr '\n' ' ')
    case $hw in *CPUs=*RealMemory=*) ;; *) skip "slurmd -C printed no node line: $line" ;; esac
    p1=$(free_port) && p2=$(free_port "$p1") || skip "no free TCP port"

    cat >"$CONF" <<EOF
# generated by tests/scaleout/slurm_local.sh — a one-node test cluster, private to $D
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$p1
SlurmdPort=$p2
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
StateSaveLocation=$D/ctld
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$D/plugstack.conf
# no cgroups: the linuxproc tracker finds a job's processes through /proc (parent links)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# schedule pending jobs (array tasks, a released dependency) at once rather than every 3 s
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
# finished jobs stay visible in squeue/scontrol this long (there is no sacct without accounting)
MinJobAge=600
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 ${hw}State=UNKNOWN
PartitionName=$PART Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    : >"$D/plugstack.conf"

    export SLURM_CONF=$CONF
    slurmctld -i >/dev/null 2>"$D/log/slurmctld.stderr" || skip "slurmctld: $(why "$D/log/slurmctld.log" "$D/log/slurmctld.stderr")"
    slurmd >/dev/null 2>"$D/log/slurmd.stderr" || skip "slurmd: $(why "$D/log/slurmd.log" "$D/log/slurmd.stderr")"

    st=
    for i in $(seq $((WAIT * 5))); do
        for p in slurmctld slurmd; do
            if ! alive_pid "$D/$p.pid" >/dev/null && [ "$i" -gt 10 ]; then
                skip "$p exited: $(why "$D/log/$p.log" "$D/log/$p.stderr")"
            fi
        done
        st=$(timeout 5 sinfo -h -n "$NODE" -o %t 2>/dev/null)
        [ "$st" = idle ] && break
        sleep 0.2
    done
    if [ "$st" != idle ]; then
        say "error: node $NODE not idle after ${WAIT}s (state '${st:-no answer}'); logs in $D/log:"
        tail -n 5 "$D/log/slurmctld.log" "$D/log/slurmd.log" >&2
        do_stop
        exit 1
    fi
    say "up in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s: node $NODE idle, partition $PART, SLURM_CONF=$CONF"
}

case ${1:-} in
    start) do_start ;;
    stop) do_stop ;;
    status)
        if is_up; then
            SLURM_CONF=$CONF sinfo -h -o '%P %D %t %C' | sed 's/^/slurm_local: up: /' >&2
            exit 0
        fi
        say "down"
        exit 3
        ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env" >&2; exit 1 ;;
esac
