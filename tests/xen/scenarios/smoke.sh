#!/bin/sh
# smoke.sh - the Xen test bed's first scenario (runs inside dom0; run it with
# `tests/xen/run.sh smoke.sh`).  A PVH domU running pagetest goes through
# xl save / xl restore and a localhost xl migrate; after each, its pass
# counter must go on from where it was (the same memory, not a reboot), with
# no page holding a value pagetest did not write, and its TCP service must
# answer.  Ends in "N passed, N failed"; step times go to results/steps.txt.
. /root/xenlib.sh

NAME=smoke
IP=10.99.0.2
MAC=00:16:3e:99:00:02
LOG=$CONSOLE_LOGS/guest-$NAME.log
SAVE=/root/$NAME.save

# -- the hypervisor -----------------------------------------------------------
step xl-info xl info
cp "$R/xl-info.log" "$R/xl-info.txt" 2>/dev/null
caps=$(sed -n 's/^virt_caps *: *//p' "$R/xl-info.txt")
echo "virt_caps: $caps"
check "xl info: virt_caps has hap ($caps)" 'echo " $caps " | grep -q " hap "'
check "xl info: Xen 4.17" 'grep -q "^xen_major *: *4$" "$R/xl-info.txt" && grep -q "^xen_minor *: *17$" "$R/xl-info.txt"'

check "bridge xenbr0 for the domU's vif" bridge_up

# -- create -------------------------------------------------------------------
domu_cfg $NAME $IP $MAC 32 >/root/$NAME.cfg
t=$(now)
if step xl-create xl create /root/$NAME.cfg; then
	ok "xl create (PVH, 128 MiB)"
else
	bad "xl create (PVH, 128 MiB)"
fi
if wait_until 300 pt_beyond "$LOG" 1; then
	record create-to-pagetest "$(since "$t")"
	ok "pagetest runs in the domU: $(pt_show "$LOG")"
else
	bad "pagetest runs in the domU (no progress in $LOG)"
	tail -30 "$LOG" 2>/dev/null
fi
t=$(now)
if wait_until 120 tcp_up $IP; then
	record tcp-first-answer "$(since "$t")"
	ok "TCP service answers: $(tcp_ask $IP)"
else
	bad "TCP service answers ($(tcp_ask $IP))"
fi

# -- save / restore -------------------------------------------------------------
before=$(pt_last "$LOG")
before=${before%% *}
check "pagetest pass count before save: ${before:-none}" '[ -n "$before" ]'
if step xl-save xl save $NAME $SAVE; then
	ok "xl save ($(du -m $SAVE | cut -f1) MiB)"
else
	bad "xl save"
fi
check "domain gone after save" '! xl domid $NAME >/dev/null 2>&1'
# tandem's image scanner (the format its standby writes for xl restore)
# must read Xen's own image.
check "xen_image_dump reads the xl save image" \
	'xen_image_dump $SAVE >$R/xl-save-dump.txt 2>&1'
head -20 $R/xl-save-dump.txt
t=$(now)
if step xl-restore xl restore $SAVE; then
	ok "xl restore"
else
	bad "xl restore"
fi
if wait_until 120 pt_beyond "$LOG" "${before:-0}"; then
	record restore-to-progress "$(since "$t")"
	ok "pagetest goes on after restore: pass ${before:-none} -> $(pt_show "$LOG")"
else
	bad "pagetest goes on after restore (last: $(pt_show "$LOG"), before: ${before:-none})"
	tail -20 "$LOG" 2>/dev/null
fi
rm -f $SAVE
check "TCP service answers after restore: $(tcp_ask $IP)" '[ "$(tcp_pass $IP)" -gt "${before:-0}" ]'

# -- localhost migration --------------------------------------------------------
before=$(pt_last "$LOG")
before=${before%% *}
check "pagetest pass count before migration: ${before:-none}" '[ -n "$before" ]'
MLOG=$CONSOLE_LOGS/guest-$NAME--incoming.log
if step_ts xl-migrate xl -vvv migrate -s "" $NAME "xl migrate-receive"; then
	ok "xl migrate to localhost"
else
	bad "xl migrate to localhost"
fi
# Downtime, from xl -vvv's lines as dom0 saw them: the guest has suspended
# (sender) until the target has started it.
dt=$(ts_between "$R/xl-migrate.log" "guest has suspended" "Domain started")
[ -n "$dt" ] && record xl-migrate-downtime "$dt"
check "migrated domain runs under its name" 'xl domid $NAME >/dev/null 2>&1'
t=$(now)
if wait_until 120 pt_beyond "$MLOG" "${before:-0}"; then
	record migrate-to-progress "$(since "$t")"
	ok "pagetest goes on after migration: pass ${before:-none} -> $(pt_show "$MLOG")"
else
	bad "pagetest goes on after migration (last: $(pt_show "$MLOG"), before: ${before:-none})"
	ls -l $CONSOLE_LOGS
	tail -20 "$MLOG" 2>/dev/null
fi
check "TCP service answers after migration: $(tcp_ask $IP)" '[ "$(tcp_pass $IP)" -gt "${before:-0}" ]'

# -- memory contents all along ----------------------------------------------------
errs=$(( $(pt_errors "$LOG") + $(pt_errors "$MLOG") ))
bl=$(( $(pt_bad_lines "$LOG") + $(pt_bad_lines "$MLOG") ))
check "pagetest found no page it did not write (errors $errs, lines $bl)" '[ "$errs" -eq 0 ] && [ "$bl" -eq 0 ]'

# -- destroy --------------------------------------------------------------------
if step xl-destroy xl destroy $NAME; then
	ok "xl destroy"
else
	bad "xl destroy"
fi
check "no domU left" '[ "$(xl list | awk "NR > 2" | wc -l)" -eq 0 ]'
xl list

finish
