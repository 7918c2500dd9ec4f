#!/bin/sh
# Stand-in reboot / shutdown / poweroff / halt (by the name it runs as): a test host has no firmware
# to reset. PID 1 is told to stop (it stops the services, then exits, which ends the host); the request
# left on the host's disk tells the supervisor outside to boot it again (reboot) or not (poweroff), and
# to cut the power if PID 1 never ends.
case "$(basename "$0")" in
  reboot) action=reboot ;;
  shutdown)
    action=poweroff
    for arg in "$@"; do
      case "$arg" in
        -c) exit 0 ;;
        -*r*) action=reboot ;;
      esac
    done ;;
  *) action=poweroff ;;
esac
mkdir -p /var/lib/xpd-testhost
: > "/var/lib/xpd-testhost/$action-requested"
# Return first, as the real commands do, so the session that asked sees its command finish; in a
# session of its own, so the hangup when that SSH session closes does not cancel it. Debian's
# daemonless systemctl handles SIGTERM only once its boot has started every enabled unit (before, PID 1
# ignores it), so the signal is repeated until PID 1 takes it; it ignores SIGTERM from then on.
setsid sh -c 'sleep 1; i=0; while [ $i -lt 60 ]; do kill -TERM 1; sleep 2; i=$((i + 1)); done' </dev/null >/dev/null 2>&1 &
echo "$action in 1 s" >&2
