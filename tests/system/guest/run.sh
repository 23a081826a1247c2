#!/bin/bash
# The guest side of the alsa-bt system tests: runs as the only job of the VM
# (see tests/system/vm.py), brings up the real Bluetooth stack and runs the
# steps named in /run/share/job.env, leaving every result in /run/share for
# the host to analyse.  Each step writes steps/NAME.out ("key value" lines)
# and its logs; steps.txt gets "NAME rc START END" (seconds since boot).
#
# job.env sets: REPO, BUILD, STEPS (e.g. "stack pair warmup play:sweep volume"),
# and for play:NAME, PLAY_NAME="file.wav [aplay device args]".
set -u
SHARE=/run/share
. $SHARE/job.env
GUEST=$REPO/tests/system/guest
PY=/usr/bin/python3
BT="$PY $GUEST/bt.py"
SRC_HCI=hci0 SRC_ADDR=00:AA:01:00:00:00
SINK_HCI=hci1 SINK_ADDR=00:AA:01:01:00:01
DEVARGS="DEV=$SINK_ADDR,ADAPTER=$SRC_HCI,TIMEOUT=${TIMEOUT_MS:-20000}"
# Daemon logs go to the guest's tmpfs (every write to the share is a 9p
# round trip to the host) and are copied to the share at the end.
LOGS=/run/logs
mkdir -p $SHARE/steps $LOGS
export HOME=/root XDG_RUNTIME_DIR=/run/user/0 XDG_STATE_HOME=/root/.local/state
mkdir -p $XDG_RUNTIME_DIR && chmod 700 $XDG_RUNTIME_DIR
: > $SHARE/steps.txt

now() { cut -d' ' -f1 /proc/uptime; }
# calc EXPR: floating-point arithmetic (bc is not always installed)
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
say() { echo "[$(now)] $*"; echo "[$(now)] $*" > /dev/console; }
# wait_for SECONDS COMMAND...: polls every 0.1 s; 1 if it never succeeded
wait_for() {
	local end=$(( $(date +%s%N) / 1000000 + ${1%.*} * 1000 )); shift
	until "$@" > /dev/null 2>&1; do
		[ $(( $(date +%s%N) / 1000000 )) -ge $end ] && return 1
		sleep 0.1
	done
}
kv() { echo "$1 $2" >> $OUT; }
# CPU time so far: the whole guest (/proc/stat) and each process (ps)
cpu_snapshot() { head -1 /proc/stat; ps -eo pid,comm,cputimes --no-headers 2>/dev/null || ps -eo pid,comm,time --no-headers; }

# The ALSA configuration a user of the build tree would have.
cat > $HOME/.asoundrc <<EOF
pcm_type.bluetooth { lib "$BUILD/libasound_module_pcm_bluetooth.so" }
ctl_type.bluetooth { lib "$BUILD/libasound_module_ctl_bluetooth.so" }
<$REPO/conf/20-bluetooth.conf>
EOF

# ---------------------------------------------------------------- steps

step_stack() {
	local t
	t=$(now)
	/run/modprobe -a bluetooth hci_vhci cmac algif_hash algif_skcipher || return 1
	kv modprobe_s $(calc "$(now) - $t")
	if [ "${SINK:-bluealsa}" = pipewire ]; then
		dbus-daemon --config-file=$GUEST/pipewire-bus.conf --fork --print-pid > /dev/null || return 1
	else
		dbus-daemon --system --fork --print-pid > /dev/null || return 1
	fi
	# The emulated controllers have one 192-byte ACL buffer each (BlueZ's
	# btdev): every media packet is 4 round trips through btvirt, so it
	# gets the CPU first; under TCG a late btvirt is a "weak signal".
	chrt -f 50 btvirt -l2 > $LOGS/btvirt.log 2>&1 &
	echo $! > /run/btvirt.pid
	wait_for 10 test -e /sys/class/bluetooth/hci1 || { kv error "btvirt made no hci1"; return 1; }
	# dbus-monitor first, so that the whole D-Bus conversation is on record.
	dbus-monitor --system > $LOGS/dbus-monitor.log 2>&1 &
	# btmon -w (binary; btmon -r reads it) only when asked: it cannot keep up
	# with the media packets under TCG and its load makes the link jitter.
	[ -n "${BTMON:-}" ] && btmon -w $LOGS/btmon.snoop > /dev/null 2>&1 &
	# Only the plugins that matter: hostname would wait for hostnamed.
	/usr/libexec/bluetooth/bluetoothd -n ${BLUETOOTHD_DEBUG:+-d} ${BLUETOOTHD_ARGS:-} \
		-P hostname,sap,neard,network,input,hog,health,midi,wiimote,sixaxis \
		> $LOGS/bluetoothd.log 2>&1 &
	wait_for 20 dbus-send --system --print-reply --dest=org.bluez /org/bluez/hci1 \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address \
		|| { kv error "bluetoothd did not come up"; return 1; }
	kv bluetoothd_up_s $(now)
	# The sink, before pairing: its A2DP Sink record is then in the SDP
	# records that the source side caches when it pairs.
	if [ "${SINK:-bluealsa}" = pipewire ]; then
		start_pipewire || return 1
	else
		# --a2dp-volume: the volume is the speaker's (AVRCP), bluez-alsa
		# does not scale the samples it hands over.
		bluealsa -i $SINK_HCI -p a2dp-sink --a2dp-volume > $LOGS/bluealsa.log 2>&1 &
		wait_for 20 dbus-send --system --print-reply --dest=org.bluealsa /org/bluealsa \
			org.bluealsa.Manager1.GetPCMs || { kv error "bluealsa did not come up"; return 1; }
	fi
	# The sink is ready when hci1 offers the Audio Sink UUID (its SDP record).
	wait_for 20 sh -c "dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SINK_HCI \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:UUIDs | grep -q 0000110b" \
		|| { kv error "no A2DP sink registered on $SINK_HCI"; return 1; }
	kv sink_up_s $(now)
	$BT agent > $LOGS/agent.log 2>&1 &
	wait_for 20 grep -q registered $LOGS/agent.log || { kv error "agent did not register"; return 1; }
	kv agent_up_s $(now)
}

# PipeWire + WirePlumber as the sink instead of bluez-alsa: A2DP sink role
# only, SBC, no headset profiles, no auto-connect (it would page hci0 itself).
start_pipewire() {
	# As nobody (see pipewire-bus.conf), with a runtime dir and HOME of its own.
	PW_DIR=/run/pw
	mkdir -p $PW_DIR/home/.config/wireplumber/bluetooth.lua.d
	cat > $PW_DIR/home/.config/wireplumber/bluetooth.lua.d/51-alsabt.lua <<-EOF
	bluez_monitor.properties = {
	  ["with-logind"] = false,
	  ["bluez5.codecs"] = "[ sbc ]",
	  ["bluez5.hfphsp-backend"] = "none",
	  ["bluez5.enable-hw-volume"] = true,
	}
	bluez_monitor.rules = {
	  {
	    matches = { { { "device.name", "matches", "bluez_card.*" } } },
	    apply_properties = { ["bluez5.auto-connect"] = "[ ]" },
	  },
	}
	EOF
	chown -R nobody:nogroup $PW_DIR
	chmod 700 $PW_DIR
	PW="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=$PW_DIR/home XDG_RUNTIME_DIR=$PW_DIR"
	$PW sh -c 'dbus-daemon --session --fork --print-address=1 > $XDG_RUNTIME_DIR/session-bus'
	PW="$PW DBUS_SESSION_BUS_ADDRESS=$(cat $PW_DIR/session-bus)"
	$PW pipewire > $LOGS/pipewire.log 2>&1 &
	wait_for 20 test -S $PW_DIR/pipewire-0 || { kv error "pipewire did not start"; return 1; }
	$PW wireplumber > $LOGS/wireplumber.log 2>&1 &
	kv pipewire_up_s $(now)
}

step_pair() {
	$BT pair $SRC_HCI $SRC_ADDR $SINK_HCI $SINK_ADDR >> $OUT 2> $LOGS/pair.log
}

# capture_start NAME: bluez-alsa's sink records what arrives into
# captures/NAME.wav (bt.py capture); capture_stop waits for it to finish.
capture_start() {
	mkdir -p $SHARE/captures
	rm -f $SHARE/captures/$1.wav /run/$1.ready
	$BT capture $SINK_HCI $SRC_ADDR $SHARE/captures/$1.wav /run/$1.ready ${CAPTURE_MAX_S:-90} \
		> $SHARE/steps/$1.capture 2> $LOGS/$1.capture.log &
	CAPTURE_PID=$!
	wait_for 20 test -e /run/$1.ready || { kv error "capture did not start"; return 1; }
}
capture_stop() {
	local i
	# "the player is done": it ends at the PCM's EOF (at most 10 s later)
	kill -USR1 $CAPTURE_PID 2> /dev/null
	for i in $(seq 150); do kill -0 $CAPTURE_PID 2> /dev/null || break; sleep 0.1; done
	kill -0 $CAPTURE_PID 2> /dev/null && { kv capture_killed yes; kill $CAPTURE_PID; }
	wait $CAPTURE_PID
	kv capture_rc $?
}

# play NAME FILE [DEVICE]: plays FILE (in the share) with aplay through our
# plugin while bluez-alsa's sink records what arrives: captures/NAME.wav.
play() {
	local name=$1 file=$2 dev=${3:-bluetooth:$DEVARGS} t0 t1 rc
	# From the guest's tmpfs: a read from the share is a round trip to the host.
	cp "$SHARE/$file" /tmp/play.wav || return 1
	capture_start $name || return 1
	cpu_snapshot > $LOGS/$name.cpu0
	t0=$(date +%s.%N)
	kv aplay_start $(now)
	timeout -k 2 ${APLAY_MAX_S:-60} aplay -D "$dev" /tmp/play.wav \
		> $LOGS/$name.aplay.out 2> $LOGS/$name.aplay.err
	rc=$?
	t1=$(date +%s.%N)
	kv aplay_end $(now)
	cpu_snapshot > $LOGS/$name.cpu1
	kv aplay_rc $rc
	kv aplay_s $(calc "$t1 - $t0")
	capture_stop
	return $rc
}

step_play() {
	local name=$1 spec
	spec=$(eval echo "\${PLAY_$name}")
	play $name $spec
}

# pwplay:NAME: like play, with PipeWire's bluez input recorded by pw-record
# (WirePlumber links the capture stream to the new source when it appears).
step_pwplay() {
	local name=$1 spec file dev rate rc t0 t1 rpid
	spec=$(eval echo "\${PLAY_$name}")
	file=${spec%% *} rate=${spec##* }
	cp "$SHARE/$file" /tmp/play.wav || return 1
	mkdir -p $SHARE/captures
	# pw-record fails at once without a source: start it as the bluez input
	# node appears (the first part of the audio may pass before it links).
	(
		for i in $(seq 400); do
			node=$($PW pw-cli ls Node 2>/dev/null | sed -n 's/.*node.name = "\(bluez_input[^"]*\)".*/\1/p' | head -1)
			[ -n "$node" ] && break
			sleep 0.05
		done
		echo "node $node at $(now)" > $LOGS/$name.pw-node
		exec $PW pw-record --target "$node" --rate $rate --channels 2 --format s16 \
			$PW_DIR/$name.pw.wav > $LOGS/$name.pw-record.log 2>&1
	) &
	rpid=$!
	t0=$(date +%s.%N)
	kv aplay_start $(now)
	timeout -k 2 ${APLAY_MAX_S:-60} aplay -D bluetooth:$DEVARGS /tmp/play.wav \
		> $LOGS/$name.aplay.out 2> $LOGS/$name.aplay.err
	rc=$?
	t1=$(date +%s.%N)
	kv aplay_end $(now)
	kv aplay_rc $rc
	kv aplay_s $(calc "$t1 - $t0")
	$PW pw-cli ls Node > $LOGS/$name.pw-nodes 2>&1
	sleep 1
	kill -INT $rpid 2> /dev/null
	wait $rpid
	kv pw_record_rc $?
	cp $PW_DIR/$name.pw.wav $SHARE/captures/$name.wav
	return $rc
}

# volume:FILE: while FILE plays, the volume both ways (bt.py volume):
# amixer on our ctl -> AVRCP -> the sink's transport and bluez-alsa; the
# sink's transport -> AVRCP -> our ctl.  The audio is recorded too: with
# AVRCP volume the PCM must not scale the samples.
step_volume() {
	local file=$1 apid rc
	cp "$SHARE/$file" /tmp/play.wav || return 1
	capture_start volume || return 1
	kv aplay_start $(now)
	aplay -D bluetooth:$DEVARGS /tmp/play.wav > $LOGS/volume.aplay.out 2> $LOGS/volume.aplay.err &
	apid=$!
	$BT volume $SRC_HCI $SINK_ADDR $SINK_HCI $SRC_ADDR bluetooth:$DEVARGS 50 100 \
		>> $OUT 2> $LOGS/volume.log
	rc=$?
	amixer -D bluetooth:$DEVARGS contents > $LOGS/volume.amixer 2>&1
	wait $apid
	kv aplay_rc $?
	kv aplay_end $(now)
	capture_stop
	return $rc
}

# ---------------------------------------------------------------- main

say "guest: steps: $STEPS"
failed=0
for s in $STEPS; do
	name=${s%%:*} arg=${s#*:}
	[ "$arg" = "$s" ] && arg=
	label=$name
	[ $name = play ] && label=$arg
	OUT=$SHARE/steps/$label.out
	: > $OUT
	say "step $label"
	start=$(now)
	step_$name $arg
	rc=$?
	echo "$label $rc $start $(now)" >> $SHARE/steps.txt
	say "step $label: rc $rc ($(calc "$(now) - $start") s)"
	if [ $rc -ne 0 ]; then
		failed=1
		case $name in stack|pair) break ;; esac
	fi
done
cp -r $LOGS $SHARE/
sync
exit $failed
