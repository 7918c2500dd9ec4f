#!/bin/sh
# Stand-in reboot / shutdown / poweroff / halt (by the name it runs as): a test host has no firmware
# to reset. PID 1 is told to stop (it stops the services, then exits, which ends the host); a reboot
# first leaves a request the host's supervisor outside reads to boot it again.
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
[ "$action" = reboot ] && : > /var/lib/xpd-testhost/reboot-requested
# Return first, as the real commands do, so the session that asked sees its command finish; in a
# session of its own, so the hangup when that SSH session closes does not cancel it.
setsid sh -c 'sleep 1; kill -TERM 1' </dev/null >/dev/null 2>&1 &
echo "$action in 1 s" >&2
