#!/bin/bash
# Runs spoofed_signals.c against a private dbus-daemon whose policy is this
# machine's system bus policy (/usr/share/dbus-1/system.conf, without the
# service files: the default context, which every local user gets).
# Exit 1 while finding 1 or 2 stands: a spoofed signal changed the
# endpoint (spoofed_signals.c) or crashed the ctl's filter (ctl_crash.c).
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../../.." && pwd)
tmp=$(mktemp -d)
trap 'kill "$bus_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
sed -e "s|<listen>.*</listen>|<listen>unix:path=$tmp/bus</listen>|" \
    -e '/<user>/d' -e '/<pidfile>/d' -e '/<includedir>/d' -e '/<include /d' \
    -e '/<servicedir>/d' -e '/<standard_system_servicedirs/d' -e '/<servicehelper>/d' \
    /usr/share/dbus-1/system.conf >"$tmp/bus.conf"
dbus-daemon --config-file="$tmp/bus.conf" --nofork --print-address=3 3>"$tmp/address" &
bus_pid=$!
for _ in $(seq 50); do [ -s "$tmp/address" ] && break; sleep 0.1; done
address=$(head -n 1 "$tmp/address")
flags="-g -std=gnu11 -pthread -I$top/bluez -I$top/codecs -I$top/a2dp -I$top/common $(pkg-config --cflags alsa dbus-1 sbc)"
libs="$(pkg-config --libs alsa dbus-1 sbc) -lm"
cc $flags "$here/spoofed_signals.c" "$top/bluez/bluez.c" "$top/bluez/dbus.c" \
	"$top/codecs/sbc_codec.c" $libs -o "$tmp/spoofed_signals"
cc $flags "$here/ctl_crash.c" "$top/bluez/bluez.c" "$top/bluez/dbus.c" "$top/common/volume.c" \
	"$top/common/options.c" $libs -o "$tmp/ctl_crash"
rc=0
echo "=== finding 2: spoofed signals into the PCM's endpoint"
"$tmp/spoofed_signals" "$address" 2>/dev/null || rc=1
echo "=== finding 1: a malformed InterfacesAdded into the ctl"
"$tmp/ctl_crash" "$address" 2>/dev/null
crc=$?
[ "$crc" -eq 0 ] || { echo "the ctl died (exit $crc$( [ "$crc" -gt 128 ] && echo ", signal $((crc - 128))"))"; rc=1; }
exit $rc
