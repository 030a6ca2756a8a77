#!/bin/sh
# protect.sh - tandem protects a PVH domU on real Xen (runs inside dom0;
# `tests/xen/run.sh protect.sh`).  Two tandemd on this one dom0, "alpha"
# (primary) and "beta" (standby), linked over loopback: alpha creates the
# domU from its xl config and checkpoints it every 100 ms into beta's
# replica.  Then the primary host "dies": alpha's tandemd is killed with
# SIGKILL and the domain destroyed.  beta must notice, resume the guest
# from its last committed checkpoint through xl restore, and the guest must
# go on: pagetest's pass counter continues (same memory, not a reboot), no
# page ever holds a value pagetest did not write, and its TCP service
# answers.  Then alpha comes back as the standby and `tandem migrate`
# moves the guest back to it, and a `tandem drill` kills alpha at the
# "sent" phase of an epoch; the same checks after each.  Ends in
# "N passed, N failed"; timings go to results/steps.txt.
. /root/xenlib.sh

NAME=xg
IP=10.99.0.2
MAC=00:16:3e:99:00:02
LOG=$CONSOLE_LOGS/guest-$NAME.log
CONF=/root/$NAME.conf

check "bridge xenbr0 for the domU's vif" bridge_up
domu_cfg $NAME $IP $MAC 32 >/root/$NAME.cfg
tandem_conf $NAME >$CONF
check "tandemd --check-config accepts backend xen" \
	'tandemd -c $CONF --host alpha --check-config >$R/check-config.log 2>&1'

# -- protect --------------------------------------------------------------------
tandemd -c $CONF --host beta --role standby >$R/beta.log 2>&1 &
BPID=$!
t=$(now)
tandemd -c $CONF --host alpha --role primary >$R/alpha.log 2>&1 &
APID=$!
if wait_until 300 pt_beyond "$LOG" 1; then
	record create-to-pagetest "$(since "$t")"
	ok "alpha created the domU; pagetest runs: $(pt_show "$LOG")"
else
	bad "alpha created the domU; pagetest runs (no progress in $LOG)"
	tail -20 $R/alpha.log
fi
if wait_until 900 is_shown $SA protect.state protected; then
	record start-to-protected "$(since "$t")"
	ok "alpha: protected (first full copy committed by beta)"
else
	bad "alpha: protected (state $(get $SA protect.state))"
	tail -30 $R/alpha.log
	tail -30 $R/beta.log
fi
xl list
if wait_until 120 tcp_up $IP; then
	ok "TCP service answers while protected: $(tcp_ask $IP)"
else
	bad "TCP service answers while protected ($(tcp_ask $IP))"
fi

# -- checkpoints at 100 ms ------------------------------------------------------------
e0=$(get $SB replica.committed)
p0=$(pt_last "$LOG"); p0=${p0%% *}
t=$(now)
sleep 20
e1=$(get $SB replica.committed)
p1=$(pt_last "$LOG"); p1=${p1%% *}
dt=$(since "$t")
record protected-20s-epochs "$((${e1:-0} - ${e0:-0}))"
record protected-20s-pagetest-passes "$((${p1:-0} - ${p0:-0}))"
echo "epochs committed in ${dt} s: ${e0:-?} -> ${e1:-?}; pagetest passes ${p0:-?} -> ${p1:-?}"
check "beta commits epochs while the guest runs (${e0:-?} -> ${e1:-?})" \
	'[ "${e1:-0}" -gt "$((${e0:-0} + 10))" ]'
check "pagetest goes on while protected (${p0:-?} -> ${p1:-?})" \
	'[ "${p1:-0}" -gt "${p0:-0}" ]'
tandem status --control $SA >$R/status-alpha.txt 2>&1
tandem status --control $SB >$R/status-beta.txt 2>&1

# -- the primary host dies ------------------------------------------------------------
before=$(tcp_pass $IP)
check "TCP pass count before the failure: ${before:-none}" '[ -n "$before" ]'
committed=$(get $SB replica.committed)
t=$(now)
kill -9 $APID
xl destroy $NAME
record kill-and-destroy "$(since "$t")"
ok "alpha killed (SIGKILL) and the domain destroyed at epoch ${committed:-?}"
if wait_until 120 is_shown $SB role primary; then
	record failure-to-beta-primary "$(since "$t")"
	ok "beta took over: role primary, failover epoch $(get $SB failover.epoch)"
else
	bad "beta took over (role $(get $SB role))"
	tail -40 $R/beta.log
fi
record beta-rto-ms "$(get $SB failover.rto_ms)"
check "the domain runs again under its name" 'xl domid $NAME >/dev/null 2>&1'
xl list
if wait_until 120 pt_beyond "$LOG" "${before:-0}"; then
	record failure-to-pagetest-progress "$(since "$t")"
fi
if wait_until 120 tcp_up $IP; then
	record failure-to-tcp-answer "$(since "$t")"
fi
guest_goes_on "failover" "$before"

# -- failback: live migration back to alpha -----------------------------------------
# alpha comes back as beta's standby; once protected, `tandem migrate`
# moves the guest back to it (a planned switchover: the pre-copied replica
# plus a final epoch with the guest paused).  A client asks the service
# every 0.2 s; its longest gap is the downtime a user sees.
tandemd -c $CONF --host alpha --role standby >$R/alpha2.log 2>&1 &
APID=$!
wait_protected $SB failback-protected "beta: protected by alpha (full copy back)"
before=$(tcp_pass $IP)
rm -f /tmp/client.stop
client_loop $IP >$R/client.txt &
CPID=$!
sleep 2
t=$(now)
if tandem migrate --control $SB --peer-control $SA --timeout 600 \
	>$R/migrate.log 2>&1; then
	record migrate-total "$(since "$t")"
	ok "tandem migrate: beta -> alpha ($(tail -1 $R/migrate.log))"
else
	bad "tandem migrate: beta -> alpha ($(tail -3 $R/migrate.log | tr '\n' ' '))"
fi
wait_until 120 tcp_up $IP
sleep 3
touch /tmp/client.stop
wait $CPID
gap=$(client_gap $R/client.txt)
[ -n "$gap" ] && record migrate-client-gap "$gap"
check "alpha runs the guest again (role $(get $SA role))" 'is $SA role primary'
check "the domain runs under its name after migration" 'xl domid $NAME >/dev/null 2>&1'
wait_until 120 pt_beyond "$LOG" "${before:-0}"
guest_goes_on "migration" "$before"

# -- a drill: alpha dies at the "sent" phase of an epoch ------------------------------
# The failpoint destroys the domain, then alpha's tandemd kills itself;
# beta must take over from its last committed epoch.
wait_protected $SA drill-protected "alpha: protected by beta again"
before=$(tcp_pass $IP)
if tandem drill --control $SB --peer-control $SA --phase sent --timeout 120 \
	>$R/drill.txt 2>&1; then
	ok "tandem drill: beta took over ($(grep RTO $R/drill.txt | tr -s ' '))"
else
	bad "tandem drill: beta took over ($(tail -4 $R/drill.txt | tr '\n' ' '))"
fi
cat $R/drill.txt
record drill-rto-ms "$(get $SB failover.rto_ms)"
wait_until 120 pt_beyond "$LOG" "${before:-0}"
wait_until 120 tcp_up $IP
guest_goes_on "the drill" "$before"

kill $BPID $APID 2>/dev/null
wait $BPID $APID 2>/dev/null
xl destroy $NAME 2>/dev/null
cp $LOG $R/ 2>/dev/null
finish
