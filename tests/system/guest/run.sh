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
GUEST=$(cd "$(dirname "$0")" && pwd)      # a copy in the share (systest.py)
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

# has_owner NAME: someone owns NAME on the system bus
has_owner() {
	dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
		org.freedesktop.DBus.GetNameOwner string:$1 > /dev/null 2>&1
}

# ---------------------------------------------------------------- the stack

# btvirt's two emulated controllers (hci0 <-> hci1).  Under TCG the kernel's
# HCI_Reset to a new controller sometimes times out ("hci0: Opcode 0x0c03
# failed: -110"): the controller stays in sysfs but never reaches the
# management interface, so bluetoothd would never register it.  mgmt.py sees
# that (the kernel's message, or the controllers missing from the index list
# in time); btvirt is then stopped (its controllers go with it) and started
# again.
start_controllers() {
	local try t r
	for try in 1 2 3 4; do
		t=$(now)
		# One 192-byte ACL buffer each (BlueZ's btdev): every media packet
		# is 4 round trips through btvirt, so it gets the CPU first; under
		# TCG a late btvirt is a "weak signal".
		# UNRESPONSIVE_CONTROLLER (a test of this recovery): before the first
		# btvirt, a controller that never answers (mgmt.py unresponsive), so
		# that the kernel's set-up times out as it does under TCG now and then.
		if [ $try = 1 ] && [ -n "${UNRESPONSIVE_CONTROLLER:-}" ]; then
			$PY $GUEST/mgmt.py unresponsive 60 > $LOGS/unresponsive.log 2>&1 &
			echo $! > /run/unresponsive.pid
			wait_for 20 sh -c "dmesg | grep -q 'hci0: Opcode 0x0c03 failed'"
		fi
		chrt -f 50 btvirt -l2 >> $LOGS/btvirt.log 2>&1 &
		echo $! > /run/btvirt.pid
		r=$($PY $GUEST/mgmt.py wait 2 20 $t)
		if [ $? = 0 ] && [ "$r" = "controllers hci0 hci1" ]; then
			kv controller_attempts $try
			return 0
		fi
		say "controllers: attempt $try: $r; restarting btvirt"
		kv controller_failure_$try "$r"
		{ echo "--- attempt $try at $(now): $r"; ls /sys/class/bluetooth; dmesg | tail -n 20; } \
			>> $LOGS/controller-failures.log 2>&1
		kill -9 $(cat /run/btvirt.pid) 2> /dev/null
		wait $(cat /run/btvirt.pid) 2> /dev/null
		if [ -e /run/unresponsive.pid ]; then
			kill $(cat /run/unresponsive.pid); wait $(cat /run/unresponsive.pid); rm /run/unresponsive.pid
		fi
		wait_for 10 sh -c '! ls -d /sys/class/bluetooth/hci* > /dev/null 2>&1'
	done
	kv error "the emulated controllers never came up (4 attempts): $r"
	return 1
}

adapter_powered() {
	dbus-send --system --print-reply --dest=org.bluez /org/bluez/$1 \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Powered 2> /dev/null \
		| grep -q 'boolean true'
}
# power_on HCI: asks bluetoothd until the adapter is on (powering on resets
# the controller again, which can time out the same way under TCG).
power_on() {
	local try
	for try in 1 2 3; do
		adapter_powered $1 && return 0
		timeout 15 dbus-send --system --print-reply --dest=org.bluez /org/bluez/$1 \
			org.freedesktop.DBus.Properties.Set string:org.bluez.Adapter1 string:Powered \
			variant:boolean:true > /dev/null 2>> $LOGS/power.log
		wait_for 5 adapter_powered $1 && return 0
	done
	return 1
}

# bluetoothd, up with both adapters registered and powered.
start_bluetoothd() {
	# Only the plugins that matter: hostname would wait for hostnamed.
	/usr/libexec/bluetooth/bluetoothd -n ${BLUETOOTHD_DEBUG:+-d} ${BLUETOOTHD_ARGS:-} \
		-P hostname,sap,neard,network,input,hog,health,midi,wiimote,sixaxis \
		>> $LOGS/bluetoothd.log 2>&1 &
	echo $! > /run/bluetoothd.pid
	local h
	for h in $SRC_HCI $SINK_HCI; do
		wait_for 20 dbus-send --system --print-reply --dest=org.bluez /org/bluez/$h \
			org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:Address \
			|| { kv error "bluetoothd did not register $h"; return 1; }
		power_on $h || { kv error "$h does not power on"; return 1; }
	done
}

# ---------------------------------------------------------------- steps

step_stack() {
	local t
	t=$(now)
	/run/modprobe -a bluetooth hci_vhci cmac algif_hash algif_skcipher || return 1
	kv modprobe_s $(calc "$(now) - $t")
	if [ "${SINK:-bluealsa}" = pipewire ]; then
		dbus-daemon --config-file=$GUEST/pipewire-bus.conf --fork --print-pid > /dev/null || return 1
	elif [ -n "${BUS_CONF:-}" ]; then      # make bench: bench-bus.conf
		dbus-daemon --config-file=$GUEST/$BUS_CONF --fork --print-pid > /dev/null || return 1
	else
		dbus-daemon --system --fork --print-pid > /dev/null || return 1
	fi
	start_controllers || return 1
	kv controllers_up_s $(now)
	# dbus-monitor first, so that the whole D-Bus conversation is on record.
	stdbuf -oL dbus-monitor --system > $LOGS/dbus-monitor.log 2>&1 &
	# btmon -w (binary; btmon -r reads it) only when asked: it cannot keep up
	# with the media packets under TCG and its load makes the link jitter.
	[ -n "${BTMON:-}" ] && btmon -w $LOGS/btmon.snoop > /dev/null 2>&1 &
	start_bluetoothd || return 1
	kv bluetoothd_up_s $(now)
	# The sink, before pairing: its A2DP Sink record is then in the SDP
	# records that the source side caches when it pairs.
	if [ "${SINK:-bluealsa}" = pipewire ]; then
		start_pipewire || return 1
	else
		# --a2dp-volume: the volume is the speaker's (AVRCP), bluez-alsa
		# does not scale the samples it hands over.
		# BLUEALSA_ARGS: more codecs (-c aptX ...; bluez-alsa 4.3 decodes aptX, aptX HD)
		bluealsa -i $SINK_HCI -p a2dp-sink --a2dp-volume ${BLUEALSA_ARGS:-} > $LOGS/bluealsa.log 2>&1 &
		wait_for 20 has_owner org.bluealsa || { kv error "bluealsa did not come up"; return 1; }
	fi
	# The sink is ready when hci1 offers the Audio Sink UUID (its SDP record).
	wait_for 20 sh -c "dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SINK_HCI \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:UUIDs | grep -q 0000110b" \
		|| { kv error "no A2DP sink registered on $SINK_HCI"; return 1; }
	kv sink_up_s $(now)
	# HEADSET: hci1 is a headset too (bluez-alsa's Hands-Free, -p hfp-hf in
	# BLUEALSA_ARGS): its record must be there before pairing, for hci0 to
	# know hci1 offers Hands-Free.
	if [ -n "${HEADSET:-}" ]; then
		wait_for 20 sh -c "dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SINK_HCI \
			org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:UUIDs | grep -q 0000111e" \
			|| { kv error "no HFP Hands-Free (the headset) registered on $SINK_HCI"; return 1; }
	fi
	# PHONE: hci1 plays the phone too (phone:NAME): its A2DP Source record
	# must be there before pairing, which caches hci1's records on hci0.
	if [ -n "${PHONE:-}" ]; then
		wait_for 20 sh -c "dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SINK_HCI \
			org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:UUIDs | grep -q 0000110a" \
			|| { kv error "no A2DP source (the phone) registered on $SINK_HCI"; return 1; }
		kv phone_up_s $(now)
	fi
	$BT agent > $LOGS/agent.log 2>&1 &
	wait_for 20 grep -q registered $LOGS/agent.log || { kv error "agent did not register"; return 1; }
	kv agent_up_s $(now)
}

# PipeWire + WirePlumber as the sink instead of bluez-alsa: A2DP sink role
# (and the A2DP source role with PHONE, for phone:NAME; WirePlumber 0.4 has
# both anyway), SBC, SBC-XQ, aptX and aptX HD, no headset profiles, no
# auto-connect (it would page hci0 itself).
start_pipewire() {
	# As nobody (see pipewire-bus.conf), with a runtime dir and HOME of its own.
	PW_DIR=/run/pw
	mkdir -p $PW_DIR/home/.config/wireplumber/bluetooth.lua.d
	cat > $PW_DIR/home/.config/wireplumber/bluetooth.lua.d/51-alsabt.lua <<-EOF
	bluez_monitor.properties = {
	  ["with-logind"] = false,
	  ["bluez5.codecs"] = "[ sbc sbc_xq aptx aptx_hd ]",
	  ["bluez5.enable-sbc-xq"] = true,
	  ["bluez5.hfphsp-backend"] = "none",
	  ["bluez5.enable-hw-volume"] = true,
	}
	bluez_monitor.rules = {
	  {
	    matches = { { { "device.name", "matches", "bluez_card.*" } } },
	    apply_properties = { ["bluez5.auto-connect"] = "[ ]" },
	  },
	  {
	    matches = { { { "node.name", "matches", "bluez_input.*" } } },
	    apply_properties = {
	      ["bluez5.media-source-role"] = "input",
	      ["node.latency"] = "4096/44100",
	      ["node.pause-on-idle"] = false,
	      ["session.suspend-timeout-seconds"] = 0,
	    },
	  },
	}
	EOF
	# WirePlumber 0.5 (Debian unstable) reads SPA-JSON instead of Lua
	mkdir -p $PW_DIR/home/.config/wireplumber/wireplumber.conf.d
	cat > $PW_DIR/home/.config/wireplumber/wireplumber.conf.d/51-alsabt.conf <<-EOF
	wireplumber.profiles = { main = { monitor.bluez.seat-monitoring = disabled } }
	monitor.bluez.properties = {
	  bluez5.codecs = [ sbc sbc_xq aptx aptx_hd$([ "${PW_HFP:-}" = msbc ] && echo ' cvsd msbc') ]
	  bluez5.enable-sbc-xq = true
	  bluez5.hfphsp-backend = "$([ -n "${PW_HFP:-}" ] && echo native || echo none)"
	  bluez5.enable-hw-volume = true
	  bluez5.roles = [ a2dp_sink${PHONE:+ a2dp_source}${PW_HFP:+ hfp_hf} ]
	}
	monitor.bluez.rules = [
	  {
	    matches = [ { device.name = "~bluez_card.*" } ]
	    actions = { update-props = { bluez5.auto-connect = [ ] } }
	  }
	  {
	    matches = [ { node.name = "~bluez_input.*" } ]
	    actions = {
	      update-props = {
	        bluez5.media-source-role = input
	        node.latency = 4096/44100
	        node.rate = 1/44100
	        bluez5.decode-buffer.latency = 8192
	        node.always-process = true
	        node.pause-on-idle = false
	        session.suspend-timeout-seconds = 0
	      }
	    }
	  }
	]
	EOF
	# The graph at the stream's rate with a large quantum, the bluez input
	# its driver (the rules above: media-source-role input): then no
	# resampler runs anywhere, and one vCPU under TCG keeps up with a wake-up
	# every 93 ms where PipeWire's default (512 frames at 48 kHz, adaptive
	# resampling as a follower of a timer) drops and pads audio.
	mkdir -p $PW_DIR/home/.config/pipewire/pipewire.conf.d
	cat > $PW_DIR/home/.config/pipewire/pipewire.conf.d/51-alsabt.conf <<-EOF
	context.properties = {
	  default.clock.rate = 44100
	  default.clock.allowed-rates = [ 44100 ]
	  default.clock.quantum = 4096
	  default.clock.min-quantum = 4096
	  default.clock.max-quantum = 8192
	}
	EOF
	chown -R nobody:nogroup $PW_DIR
	chmod 700 $PW_DIR
	PW="setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME=$PW_DIR/home XDG_RUNTIME_DIR=$PW_DIR"
	$PW sh -c 'dbus-daemon --session --fork --print-address=1 > $XDG_RUNTIME_DIR/session-bus'
	PW="$PW DBUS_SESSION_BUS_ADDRESS=$(cat $PW_DIR/session-bus)"
	$PW pipewire > $LOGS/pipewire.log 2>&1 &
	wait_for 20 test -S $PW_DIR/pipewire-0 || { kv error "pipewire did not start"; return 1; }
	# WP_DEBUG: WirePlumber's log levels (WIREPLUMBER_DEBUG, e.g. spa.bluez5:4)
	$PW ${WP_DEBUG:+WIREPLUMBER_DEBUG=$WP_DEBUG} wireplumber > $LOGS/wireplumber.log 2>&1 &
	kv pipewire_up_s $(now)
}

# With PipeWire as the phone, hci1 must cache a sink SEP of ours too (bt.py
# cmd_pair: sink-too).
step_pair() {
	local sink_too=
	[ "${SINK:-bluealsa}" = pipewire ] && [ -n "${PHONE:-}" ] && sink_too=sink-too
	$BT pair $SRC_HCI $SRC_ADDR $SINK_HCI $SINK_ADDR $sink_too >> $OUT 2> $LOGS/pair.log
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
# A recorder whose Open of the sink's PCM was answered only after the sink's
# transport went active (a starved guest; the player re-configured the link a
# moment before) may have missed the start: that play is done again (at most
# twice more), and says so.
play() {
	local rc try
	for try in 1 2 3; do
		play_once "$@"
		rc=$?
		[ $try = 3 ] && break
		grep -q '^capture_late yes' $SHARE/steps/$1.capture 2> /dev/null || break
		kv retried "try $try: the sink's transport went active before its recorder's Open was answered ($(sed -n 's/^capture_open_ms //p' $SHARE/steps/$1.capture) ms; that try's files: *.try$try.*)"
		for f in $LOGS/$1.capture.log $LOGS/$1.aplay.err $SHARE/captures/$1.wav; do
			mv $f ${f%.*}.try$try.${f##*.} 2> /dev/null
		done
	done
	return $rc
}
play_once() {
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

# bluez_inputs: "id name" of each of PipeWire's bluez input nodes
bluez_inputs() {
	$PW pw-cli ls Node 2> /dev/null | awk '
		/^[ \t]*id [0-9]+,/ { id = $2; sub(",", "", id) }
		/node.name = "bluez_input/ { n = $3; gsub("\"", "", n); print id, n }'
}

# pw_follow NAME RATE: records PipeWire's bluez input into one file.  The
# recorder starts before the stream, unlinked (--target 0: WirePlumber
# leaves it alone; asked for a node that is not there yet, WirePlumber 0.4
# answers "no node available" and pw-record quits).  pw-link's monitor
# reports each new port as it appears; once the bluez input has both, they
# are linked at once to the recorder's, again
# for each new input (our PCM may configure the link twice: once at open,
# again for the rate hw_params asks for), until /run/NAME.stop exists.
# /run/NAME.ready: the recorder is there.
pw_follow() {
	local name=$1 rate=$2 rec line port i
	$PW pw-record --target 0 -P "{ node.name = alsabt-rec }" --rate $rate --channels 2 \
		--format s16 --latency 4096 $PW_DIR/$name.pw.wav >> $LOGS/$name.pw-record.log 2>&1 &
	rec=$!
	wait_for 20 sh -c "$PW pw-link -i 2> /dev/null | grep -q '^alsabt-rec:input_FR'" ||
		echo "the recorder has no input ports" >> $LOGS/$name.pw-node
	$PW pw-link -m -o 2> /dev/null | while read -r line; do
		# a port there at the start ("=") or new ("+"): "+ name" in
		# 0.3.65, "+name" in 1.x
		port=${line#[=+]} port=${port# }
		case $line in
		[=+]*bluez_input*:capture_FR | [=+]*bluez_input*:output_FR)
			echo "$port at $(now)" >> $LOGS/$name.pw-node
			# both channels at once (pw-link takes a while under TCG)
			$PW pw-link "${port%_FR}_FL" alsabt-rec:input_FL >> $LOGS/$name.pw-node 2>&1 &
			$PW pw-link "$port" alsabt-rec:input_FR >> $LOGS/$name.pw-node 2>&1
			wait $!
			echo "${port%:*} linked at $(now)" >> $LOGS/$name.pw-node
			# The codec BlueZ configured PipeWire's sink endpoint with
			# (its path names it), the last before the links: from the bus
			# log, no client of PipeWire's (a pw-dump beside pw-link made
			# 0.3.65 drop the links; one after them has come after the
			# stream's end).
			echo "configured $(grep -o 'path=/MediaEndpoint/A2DPSink/[a-z_]*; interface=org.bluez.MediaEndpoint1; member=SetConfiguration' \
				$LOGS/dbus-monitor.log | tail -1 | sed 's|.*A2DPSink/\([a-z_]*\);.*|\1|') at $(now)" >> $LOGS/$name.pw-node
			# what PipeWire made of the stream (its codec included); a
			# dump taken right after the link may miss the node: again
			for i in 1 2 3; do
				$PW pw-dump > $LOGS/$name.pw-dump.json 2> /dev/null
				grep -q '"node.name": "bluez_input' $LOGS/$name.pw-dump.json && break
				sleep 1
			done
			;;
		esac
	done &
	touch /run/$name.ready
	wait_for 600 test -e /run/$name.stop
	pkill -f 'pw-link -m -o'
	kill -INT $rec
	wait
}

# pwplay:NAME: like play, with PipeWire's bluez input recorded by pw-record
# (pw_follow); PLAY_NAME is "FILE RATE [CODEC]".
step_pwplay() {
	local name=$1 spec file rate codec rc t0 t1 rpid
	spec=$(eval echo "\${PLAY_$name}")
	read -r file rate codec <<< "$spec"
	cp "$SHARE/$file" /tmp/play.wav || return 1
	mkdir -p $SHARE/captures
	rm -f /run/$name.stop /run/$name.ready
	pw_follow $name $rate &
	rpid=$!
	wait_for 30 test -e /run/$name.ready
	t0=$(date +%s.%N)
	kv aplay_start $(now)
	timeout -k 2 ${APLAY_MAX_S:-60} aplay -D bluetooth:$DEVARGS${codec:+,CODEC=$codec} \
		/tmp/play.wav > $LOGS/$name.aplay.out 2> $LOGS/$name.aplay.err
	rc=$?
	t1=$(date +%s.%N)
	kv aplay_end $(now)
	kv aplay_rc $rc
	kv aplay_s $(calc "$t1 - $t0")
	# the tail is recorded once the input is gone (the transport released)
	wait_for 10 sh -c "! $PW pw-cli ls Node 2> /dev/null | grep -q 'node.name = \"bluez_input'"
	kv input_gone_s $(calc "$(date +%s.%N) - $t1")
	touch /run/$name.stop
	wait $rpid
	kv pw_links "$(grep -c linked $LOGS/$name.pw-node)"
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

# mix:NAME: two programs on one speaker at once (MIX=1), and amixer while
# they play.  PLAY_NAME="FILE_A FILE_B": aplay of A, of B 0.5 s later, both
# through the speaker's mixing process (alsa-bt-mixer, started by the first,
# as the user's); the sink records the one stream (captures/NAME.wav).  The
# volume is set to 127 (unity whether the speaker or the plugin applies it)
# before, and set and read again while both play.  Then the mixing process
# must end within its linger (LINGER_MS, 2 s) after the last program.
step_mix() {
	local name=$1 a b pa pb t0
	read -r a b <<< "$(eval echo "\${PLAY_$name}")"
	cp "$SHARE/$a" /tmp/mix_a.wav && cp "$SHARE/$b" /tmp/mix_b.wav || return 1
	amixer -D bluetooth:$DEVARGS set A2DP 127 > $LOGS/$name.amixer 2>&1
	capture_start $name || return 1
	kv aplay_start $(now)
	aplay -D bluetooth:$DEVARGS,MIX=1 /tmp/mix_a.wav > $LOGS/$name.a.out 2> $LOGS/$name.a.err &
	pa=$!
	sleep 0.5
	aplay -D bluetooth:$DEVARGS,MIX=1 /tmp/mix_b.wav > $LOGS/$name.b.out 2> $LOGS/$name.b.err &
	pb=$!
	sleep 1
	kv mixers_while_playing $(pgrep -c -x alsa-bt-mixer)
	kv mixer_user $(ps -o user= -C alsa-bt-mixer | sort -u | tr '\n' ' ')
	amixer -D bluetooth:$DEVARGS set A2DP 127 >> $LOGS/$name.amixer 2>&1
	kv amixer_set_rc $?
	kv amixer_get "$(amixer -D bluetooth:$DEVARGS get A2DP 2>&1 | sed -n 's/.*Playback \([0-9]*\) \[.*/\1/p' | head -1)"
	wait $pa
	kv aplay_rc_a $?
	wait $pb
	kv aplay_rc_b $?
	t0=$(now)
	kv aplay_end $t0
	capture_stop
	wait_for 10 sh -c '! pgrep -x alsa-bt-mixer > /dev/null'
	kv mixer_gone_after_s $(calc "$(now) - $t0")
	kv mixers_left $(pgrep -c -x alsa-bt-mixer)
}

# ---------------------------------------------------------------- the phone

# phone:NAME: hci1 is the phone, our capture on hci0 records it.
# PLAY_NAME="FILE RATE SECONDS [ARGS]": arecord -D bluetooth:DEV=<hci1>,
# ADAPTER=hci0,...[,ARGS] records SECONDS at RATE into captures/NAME.wav;
# opening registers our A2DP Sink endpoint and connects the phone's A2DP
# Source (Device1.ConnectProfile), so the phone's side of the stream exists
# once it returns: then the phone plays FILE into it (bluez-alsa's source:
# aplay -D bluealsa:...; PipeWire's: pw-play to its bluez output).  With
# ON_PAUSE=silence (the default) the capture delivers silence until the
# phone's audio comes, and after it: SECONDS is fixed (-s), not "until the
# phone stops".
step_phone() {
	local name=$1 spec file rate secs args dev rc prc
	spec=$(eval echo "\${PLAY_$name}")
	read -r file rate secs args <<< "$spec"
	cp "$SHARE/$file" /tmp/play.wav || return 1
	mkdir -p $SHARE/captures
	dev="bluetooth:DEV=$SINK_ADDR,ADAPTER=$SRC_HCI,TIMEOUT=${TIMEOUT_MS:-20000}${args:+,$args}"
	kv arecord_device "$dev"
	# the phone's volume is the capture's gain (the store per device that
	# the mixer shares; playback to the same address wrote it too)
	kv volume_store_before "$(tr '\n' ' ' < $XDG_STATE_HOME/alsa-bt/${SINK_ADDR//:/_} 2> /dev/null)"
	kv arecord_start $(now)
	kv arecord_wall $(date +%s.%N)     # dbus-monitor's clock: this step's span in its log
	# (its exit time kept as it comes: the step goes on with the phone)
	rm -f /run/$name.arecord_end
	( timeout -k 2 $((secs + 40)) arecord -q -D "$dev" -f S16_LE -c 2 -r $rate -s $((rate * secs)) \
		/tmp/$name.wav > $LOGS/$name.arecord.out 2> $LOGS/$name.arecord.err
	  rc=$?; now > /run/$name.arecord_end; exit $rc ) &
	PHONE_REC=$!
	# our open returns once the stream is configured: when hci0 has its
	# transport (then the capture's clock starts; arecord's own start-up,
	# alsa-lib's configuration under TCG, takes seconds before that)
	if wait_for 40 capture_configured; then kv capture_configured $(now); fi
	if [ "${SINK:-bluealsa}" = pipewire ]; then
		phone_pipewire $name
	else
		phone_bluealsa $name
	fi
	prc=$?
	wait $PHONE_REC
	rc=$?
	kv arecord_end "$(cat /run/$name.arecord_end 2> /dev/null)"
	kv arecord_end_wall $(date +%s.%N)
	kv arecord_rc $rc
	[ $rc = 0 ] || kv error "arecord exited $rc: $(tail -c 300 $LOGS/$name.arecord.err | tr '\n' ' ')"
	cp /tmp/$name.wav $SHARE/captures/$name.wav 2> /dev/null
	[ $rc = 0 ] && [ $prc = 0 ]
}

# capture_configured: hci0 has a transport for the phone (our sink endpoint
# configured), or the recorder is gone
capture_configured() {
	dbus-send --system --print-reply --dest=org.bluez / org.freedesktop.DBus.ObjectManager.GetManagedObjects \
		2> /dev/null | grep -q "object path \"/org/bluez/$SRC_HCI/dev_${SINK_ADDR//:/_}/sep[0-9]*/fd[0-9]*\"" \
		|| ! kill -0 $PHONE_REC 2> /dev/null
}

# bluez-alsa on hci1 (-p a2dp-source) is the phone: its source PCM for our
# device exists once our open has configured the stream (bluez-alsa makes
# it at SetConfiguration, before BlueZ configures our side); aplay plays
# into it.  No python here: under TCG its start-up (2.5-6 s) would delay
# the phone.
phone_pcm() {
	bluealsa_pcm_props $PHONE_PCM /run/phone.pcm || ! kill -0 $PHONE_REC 2> /dev/null
}
# bluealsa_pcm_props PATH FILE: the properties of bluez-alsa's PCM at PATH
# into FILE (dbus-send's GetAll output; pcm_prop reads it)
bluealsa_pcm_props() {
	dbus-send --system --print-reply --dest=org.bluealsa $1 org.freedesktop.DBus.Properties.GetAll \
		string:org.bluealsa.PCM1 > $2 2> /dev/null
}
# pcm_prop NAME [FILE]: a property in dbus-send's GetAll output (/run/phone.pcm)
pcm_prop() {
	awk -v k="\"$1\"" '$1 == "string" && $2 == k { getline; print $NF; exit }' ${2:-/run/phone.pcm} | tr -d '"'
}
phone_bluealsa() {
	local name=$1 rc
	PHONE_PCM=/org/bluealsa/$SINK_HCI/dev_${SRC_ADDR//:/_}/a2dpsrc/sink
	if ! wait_for 20 phone_pcm || ! [ -s /run/phone.pcm ]; then
		kv error "bluez-alsa made no A2DP source PCM for $SRC_ADDR (did our capture connect its A2DP Source? arecord: $(tail -c 200 $LOGS/$name.arecord.err | tr '\n' ' '))"
		return 1
	fi
	kv phone_start $(now)
	timeout -k 2 ${APLAY_MAX_S:-60} aplay -D bluealsa:DEV=$SRC_ADDR,PROFILE=a2dp /tmp/play.wav \
		> $LOGS/$name.phone.out 2> $LOGS/$name.phone.err
	rc=$?
	kv phone_end $(now)
	kv phone_rc $rc
	kv phone_pcm $PHONE_PCM
	kv phone_codec "$(pcm_prop Codec)"
	# 'Sampling' in bluez-alsa 4.0, 'Rate' from 4.1 on
	kv phone_rate "$(pcm_prop Rate)$(pcm_prop Sampling)"
	[ $rc = 0 ] || kv error "the phone's aplay (bluez-alsa) exited $rc: $(tail -c 300 $LOGS/$name.phone.err | tr '\n' ' ')"
	return $rc
}

# bluez_outputs: "id name" of each of PipeWire's bluez output nodes
bluez_outputs() {
	$PW pw-cli ls Node 2> /dev/null | awk '
		/^[ \t]*id [0-9]+,/ { id = $2; sub(",", "", id) }
		/node.name = "bluez_output/ { n = $3; gsub("\"", "", n); print id, n }'
}
# phone_output: PipeWire has its bluez output (into /run/phone.out), or the
# recorder is gone
phone_output() {
	bluez_outputs > /run/phone.out
	[ -s /run/phone.out ] || ! kill -0 $PHONE_REC 2> /dev/null
}
# pw_card_profile NAME: "DEVICE_ID INDEX" of the profile NAME of PipeWire's
# bluez card for our device (from pw-dump); NAME "*": every profile's name
pw_card_profile() {
	$PW pw-dump 2> /dev/null | $PY -c '
import json, sys
for o in json.load(sys.stdin):
    info = o.get("info") or {}
    if "Device" in o.get("type", "") and "bluez_card" in str((info.get("props") or {}).get("device.name")):
        for p in (info.get("params") or {}).get("EnumProfile", []):
            if sys.argv[1] == "*":
                print(p.get("name"), end=" ")
            elif p.get("name") == sys.argv[1]:
                print(o["id"], p.get("index"))
' "$1"
}
# phone_ready: PipeWire has its bluez output (into /run/phone.out), or its
# card offers the SBC A2DP profile (into /run/phone.profile), or the
# recorder is gone
phone_ready() {
	phone_output && [ -s /run/phone.out ] && return 0
	pw_card_profile a2dp-sink-sbc > /run/phone.profile
	[ -s /run/phone.profile ] || ! kill -0 $PHONE_REC 2> /dev/null
}

# PipeWire on hci1 (the A2DP source role) is the phone: its bluez output for
# our device (made once our open configured the stream) is played into by
# pw-play.
phone_pipewire() {
	local name=$1 id node card idx rc
	# WirePlumber gives the card the a2dp-sink profile with the codec
	# "auto" (PipeWire 1.6 then makes its output: the codec it prefers of
	# those our sink offers, SBC, is the stream's). PipeWire 0.3.65 falls
	# back to no profile instead; its a2dp-sink-sbc profile, the codec the
	# stream has, is then chosen as a user would (pavucontrol, wpctl
	# set-profile).
	rm -f /run/phone.out /run/phone.profile
	wait_for 20 phone_ready
	if ! [ -s /run/phone.out ] && read -r card idx < /run/phone.profile && [ -n "${idx:-}" ]; then
		$PW pw-cli set-param $card Profile "{ index: $idx, save: false }" >> $LOGS/$name.pw-profile 2>&1
		kv pw_profile_set "$card $idx a2dp-sink-sbc"
	fi
	[ -s /run/phone.out ] || wait_for 20 phone_output
	kv pw_profiles "$(pw_card_profile '*')"
	read -r id node < /run/phone.out
	if [ -z "${id:-}" ]; then
		$PW pw-dump > $LOGS/$name.pw-dump.json 2> /dev/null
		kv error "PipeWire made no bluez output for our device (its card's profiles: $(pw_card_profile '*'); arecord $(kill -0 $PHONE_REC 2> /dev/null && echo running || echo ended): $(tail -c 200 $LOGS/$name.arecord.err | tr '\n' ' '))"
		return 1
	fi
	kv phone_node "$id $node"
	kv phone_node_s $(now)
	# what PipeWire made of the stream: the node's codec; the transports
	$PW pw-dump > $LOGS/$name.pw-dump.json 2> /dev/null
	$BT transports $SINK_HCI $SRC_ADDR $SRC_HCI $SINK_ADDR >> $OUT 2> /dev/null
	# WirePlumber gives a new output route a default volume (0.4: 0.064);
	# PipeWire applies it to the samples (or sends it over AVRCP, and the
	# phone's volume is our capture's gain): full scale
	$PW wpctl set-volume $id 1.0 >> $LOGS/$name.pw-volume 2>&1
	kv phone_volume "$($PW wpctl get-volume $id 2>&1)"
	cp /tmp/play.wav $PW_DIR/$name.wav && chown nobody:nogroup $PW_DIR/$name.wav
	kv phone_start $(now)
	timeout -k 2 ${APLAY_MAX_S:-60} $PW pw-play --target "$node" $PW_DIR/$name.wav \
		> $LOGS/$name.phone.out 2> $LOGS/$name.phone.err
	rc=$?
	kv phone_end $(now)
	kv phone_rc $rc
	kv phone_volume_after "$($PW wpctl get-volume $id 2>&1)"
	[ $rc = 0 ] || kv error "the phone's pw-play exited $rc: $(tail -c 300 $LOGS/$name.phone.err | tr '\n' ' ')"
	return $rc
}

# ---------------------------------------------------------------- PipeWire the headset

# pwvoice:NAME, PLAY_NAME="FILE RATE DIR" (SINK=pipewire PW_HFP=cvsd|msbc HEADSET=1):
# PipeWire on hci1 is the headset (WirePlumber's hfp_hf role, the native
# backend), our HFP Audio Gateway on hci0 carries FILE over SCO.  Our side
# opens first (its open brings the SLC and SCO up).  DIR play: aplay -D
# bluetooth:...,PROFILE=hfp plays FILE; pw-record (--target 0, not linked
# by WirePlumber) records PipeWire's bluez input (Audio/Source), linked by
# pw_voice_links.  DIR record: pw-play (--target 0) plays FILE into
# PipeWire's bluez output (a Stream/Input/Audio: no sink, pw-play --target
# cannot reach it), linked by hand; arecord -D ...,PROFILE=hfp records.
# WirePlumber makes the nodes, then removes and makes them again when it
# sets the card's profile (audio-gateway): every new port is linked again.
step_pwvoice() {
	local name=$1 spec file rate dir dev ours rec mon
	spec=$(eval echo "\${PLAY_$name}")
	read -r file rate dir <<< "$spec"
	cp "$SHARE/$file" $PW_DIR/$name.wav || return 1
	chown nobody:nogroup $PW_DIR/$name.wav
	cp "$SHARE/$file" /tmp/play.wav || return 1
	mkdir -p $SHARE/captures
	: > $LOGS/$name.pw-node
	dev="bluetooth:$DEVARGS,PROFILE=hfp"
	if [ $dir = play ]; then
		$PW pw-record --target 0 -P "{ node.name = alsabt-vrec }" --rate $rate --channels 1 \
			--format s16 $PW_DIR/$name.pw.wav >> $LOGS/$name.pw-rec.log 2>&1 &
		rec=$!
		wait_for 20 sh -c "$PW pw-link -i 2> /dev/null | grep -q '^alsabt-vrec:input_MONO'" ||
			{ kv error "pw-record has no input port"; kill -INT $rec; return 1; }
		pw_voice_links $name -o bluez_input alsabt-vrec:input_MONO &
	else
		$PW pw-play --target 0 -P "{ node.name = alsabt-vplay }" $PW_DIR/$name.wav \
			>> $LOGS/$name.pw-play.log 2>&1 &
		rec=$!
		wait_for 20 sh -c "$PW pw-link -o 2> /dev/null | grep -q '^alsabt-vplay:output_MONO'" ||
			{ kv error "pw-play has no output port"; kill -INT $rec; return 1; }
		pw_voice_links $name -i bluez_output alsabt-vplay:output_MONO &
	fi
	mon=$!
	kv pw_ready $(now)
	kv ours_start $(now)
	if [ $dir = play ]; then
		timeout -k 2 90 aplay -D "$dev" /tmp/play.wav > $LOGS/$name.ours.out 2> $LOGS/$name.ours.err
		kv ours_rc $?
		kv ours_end $(now)
		sleep 1
		kill -INT $rec 2> /dev/null; wait $rec; kv far_rc $?
		cp $PW_DIR/$name.pw.wav $SHARE/captures/$name.wav 2> /dev/null
	else
		timeout -k 2 90 arecord -D "$dev" -f S16_LE -r $rate -c 1 -d ${VOICE_RECORD_S:-30} \
			/tmp/$name.wav > $LOGS/$name.ours.out 2> $LOGS/$name.ours.err
		kv ours_rc $?
		kv ours_end $(now)
		kill -0 $rec 2> /dev/null && { kv far_running_at_end yes; kill -INT $rec; }
		wait $rec; kv far_rc $?
		cp /tmp/$name.wav $SHARE/captures/$name.wav 2> /dev/null
	fi
	pkill -f "pw-link -m $([ $dir = play ] && echo -o || echo -i)"
	wait $mon
	kv pw_links "$(grep -c linked $LOGS/$name.pw-node)"
	kv pw_node "$(tr '\n' ' ' < $LOGS/$name.pw-node | cut -c1-600)"
	kv ours_stderr "$(tr '\n' ' ' < $LOGS/$name.ours.err | cut -c1-400)"
	grep -q '^ours_rc 0$' $OUT
}

# pw_voice_links NAME -o|-i NODE PORT: each port of PipeWire's NODE (bluez_input's
# outputs with -o, bluez_output's inputs with -i) that appears, linked to PORT
# (the recorder's input, the player's output), until its pw-link -m is ended.
pw_voice_links() {
	local name=$1 dir=$2 node=$3 ours=$4 line port rc
	$PW pw-link -m $dir 2> /dev/null | while read -r line; do
		port=${line#[=+]} port=${port# }
		case $line in
		[=+]*$node*:*MONO)
			echo "$port at $(now)" >> $LOGS/$name.pw-node
			if [ $dir = -o ]; then
				$PW pw-link "$port" "$ours" >> $LOGS/$name.pw-node 2>&1
			else
				$PW pw-link "$ours" "$port" >> $LOGS/$name.pw-node 2>&1
			fi
			rc=$?     # pw-link's: read after $(now), $? would be now's
			echo "${port%:*} linked at $(now) rc $rc" >> $LOGS/$name.pw-node
			;;
		esac
	done
}

# ---------------------------------------------------------------- faults

# mixer_open: amixer holds our ctl open through every fault that follows
# (mixer_close checks that it is still there and answers).
# Our HFP Audio Gateway (hfp/profile.c, driven by tests/tools/hfp_client) on
# hci0 against bluez-alsa's Hands-Free on hci1: the profile registered, the
# headset connected, the Service Level Connection up to a codec, the close.
step_hfp() {
	local rc
	timeout -k 2 40 $BUILD/hfp_client $SINK_ADDR --adapter $SRC_HCI --timeout 20000 --hold 1000 \
		--trace > $LOGS/hfp_client.out 2> $LOGS/hfp_client.err
	rc=$?
	kv client "$(tr '\n' '|' < $LOGS/hfp_client.out)"
	kv client_stderr "$(grep -v '^[<>] ' $LOGS/hfp_client.err | tr '\n' ' ' | cut -c1-400)"
	return $rc
}

# ---------------------------------------------------------------- headset voice

# voice:NAME, PLAY_NAME="FILE RATE DIR": our HFP Audio Gateway on hci0 and
# bluez-alsa's Hands-Free on hci1 (-p hfp-hf) carry FILE over SCO, with
# bluez-alsa's own ALSA plugin (bluealsa:...,PROFILE=sco) at the headset's
# end.  DIR play: aplay -D bluetooth:...,PROFILE=hfp plays FILE, the headset
# records it; DIR record: arecord -D bluetooth:...,PROFILE=hfp records while
# the headset plays FILE.  Our side comes first: its open brings the Service
# Level Connection up and agrees the codec, without which bluez-alsa's PCM
# does not open.  captures/NAME.wav is what the far end got.
step_voice() {
	local name=$1 spec file rate dir dev ours far
	spec=$(eval echo "\${PLAY_$name}")
	read -r file rate dir <<< "$spec"
	cp "$SHARE/$file" /tmp/play.wav || return 1
	mkdir -p $SHARE/captures
	dev="bluetooth:$DEVARGS,PROFILE=hfp"
	far="bluealsa:DEV=$SRC_ADDR,PROFILE=sco"
	kv ours_start $(now)
	if [ $dir = play ]; then
		timeout -k 2 60 aplay -D "$dev" /tmp/play.wav > $LOGS/$name.ours.out 2> $LOGS/$name.ours.err &
	else
		timeout -k 2 60 arecord -D "$dev" -f S16_LE -r $rate -c 1 -d ${VOICE_RECORD_S:-14} \
			/tmp/$name.wav > $LOGS/$name.ours.out 2> $LOGS/$name.ours.err &
	fi
	ours=$!
	VOICE_PCM=/org/bluealsa/$SINK_HCI/dev_${SRC_ADDR//:/_}/hfphf/$([ $dir = play ] && echo source || echo sink)
	if ! wait_for 40 voice_codec_agreed $ours; then
		kv error "bluez-alsa's Hands-Free PCM $VOICE_PCM got no codec (ours: $(tail -c 300 $LOGS/$name.ours.err | tr '\n' ' '))"
		kill $ours 2> /dev/null; wait $ours; return 1
	fi
	kv far_codec "$(pcm_prop Codec /run/voice.pcm)"
	kv far_start $(now)
	if [ $dir = play ]; then
		# until ours ends; SIGTERM then ends the recording with its header
		arecord -D "$far" -f S16_LE -r $rate -c 1 /tmp/$name.far.wav \
			> $LOGS/$name.far.out 2> $LOGS/$name.far.err &
		far=$!
		wait $ours; kv ours_rc $?
		kv ours_end $(now)
		sleep 0.5
		kill -TERM $far 2> /dev/null; wait $far; kv far_rc $?
		cp /tmp/$name.far.wav $SHARE/captures/$name.wav 2> /dev/null
	else
		timeout -k 2 40 aplay -D "$far" /tmp/play.wav > $LOGS/$name.far.out 2> $LOGS/$name.far.err
		kv far_rc $?
		kv far_end $(now)
		wait $ours; kv ours_rc $?
		kv ours_end $(now)
		cp /tmp/$name.wav $SHARE/captures/$name.wav 2> /dev/null
	fi
	kv ours_stderr "$(tr '\n' ' ' < $LOGS/$name.ours.err | cut -c1-400)"
	kv far_stderr "$(tr '\n' ' ' < $LOGS/$name.far.err | cut -c1-400)"
	# the headset's recorder ends with the call: our close takes its PCM
	grep -q '^ours_rc 0$' $OUT && { grep -q '^far_rc 0$' $OUT ||
		{ [ $dir = play ] && grep -q 'No such device' $LOGS/$name.far.err; }; }
}

# voice_codec_agreed PID: bluez-alsa's PCM at $VOICE_PCM has a codec (our
# AT+BCS came), or PID (ours) is gone
voice_codec_agreed() {
	kill -0 $1 2> /dev/null || return 0
	bluealsa_pcm_props $VOICE_PCM /run/voice.pcm && [ -n "$(pcm_prop Codec /run/voice.pcm)" ]
}

step_mixer_open() {
	# unbuffered: amixer does not flush "Ready to listen" into a file
	stdbuf -o0 amixer -D bluetooth:$DEVARGS events > $LOGS/mixer.events 2>&1 &
	echo $! > /run/mixer.pid
	wait_for 20 grep -q 'Ready to listen' $LOGS/mixer.events || { kv error "amixer events did not start"; return 1; }
	kv mixer_pid $(cat /run/mixer.pid)
}

step_mixer_close() {
	local pid t0 rc
	pid=$(cat /run/mixer.pid)
	if kill -0 $pid 2> /dev/null; then kv mixer_alive yes; else
		wait $pid; kv mixer_alive "no (exit $?)"; fi
	mixer_cget close
	# SIGTERM: a background job of a script ignores SIGINT
	kill -TERM $pid 2> /dev/null
	if wait_for 5 sh -c "! kill -0 $pid 2> /dev/null"; then kv mixer_stopped yes; else
		kv mixer_stopped "no: still running 5 s after SIGTERM"; kill -9 $pid; fi
	wait $pid 2> /dev/null
	kv mixer_events "$(grep -c '^event' $LOGS/mixer.events)"
}

# mixer_cget LABEL: a fresh amixer reads the volume; bounded, timed
mixer_cget() {
	local t0=$EPOCHREALTIME rc v
	timeout 15 amixer -D bluetooth:$DEVARGS cget name='A2DP Playback Volume' \
		> /run/cget.out 2> $LOGS/cget_$1.err
	rc=$?
	v=$(sed -n 's/.*: values=\([0-9]*\).*/\1/p' /run/cget.out)
	kv cget_$1 "rc $rc value ${v:-none} $(calc "$EPOCHREALTIME - $t0") s"
}

transport_active() {
	dbus-send --system --print-reply --dest=org.bluez / org.freedesktop.DBus.ObjectManager.GetManagedObjects \
		2> /dev/null | grep -A1 '"State"' | grep -q '"active"'
}
sink_registered() {
	dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SINK_HCI \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:UUIDs 2> /dev/null \
		| grep -q 0000110b
}

# inject_fault KIND: the fault itself, as a user's world would make it
inject_fault() {
	case $1 in
	bluetoothd) kill -9 $(cat /run/bluetoothd.pid) ;;
	# the speaker's controller goes away: its adapter powered off
	poweroff) dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SINK_HCI \
			org.freedesktop.DBus.Properties.Set string:org.bluez.Adapter1 string:Powered \
			variant:boolean:false > /dev/null ;;
	# the speaker drops the A2DP profile (its side of the link stays up)
	disconnect) dbus-send --system --print-reply --dest=org.bluez \
			/org/bluez/$SINK_HCI/dev_${SRC_ADDR//:/_} org.bluez.Device1.DisconnectProfile \
			string:0000110a-0000-1000-8000-00805f9b34fb > /dev/null ;;
	esac
}

# recover KIND: the speaker comes back (the next open must play)
recover() {
	case $1 in
	bluetoothd) start_bluetoothd && wait_for 20 sink_registered ;;
	poweroff) power_on $SINK_HCI ;;
	disconnect) true ;;
	esac
}

# fault:KIND: a song plays through our PCM (cycle_client: 30 s of tone in one
# open); 1.5 s into it the fault; what the player saw, how long it took,
# what it held after snd_pcm_close, and the mixer through it; then recovery.
step_fault() {
	local kind=$1 pid t_fault t_exit rc
	$BUILD/cycle_client -D bluetooth:$DEVARGS -n 1 --burst-ms 30000 --every 1 --times --keep-going --buffer-ms 500 \
		> $LOGS/fault_$kind.client 2> $LOGS/fault_$kind.err &
	pid=$!
	wait_for 20 transport_active || { kv error "the song never started"; kill $pid; wait $pid; return 1; }
	kv playing_at $(now)
	sleep 1.5           # mid-song
	kill -0 $pid 2> /dev/null || { kv error "the player ended before the fault"; wait $pid; return 1; }
	t_fault=$EPOCHREALTIME
	inject_fault $kind
	kv fault_rt $t_fault
	wait_for 20 sh -c "! kill -0 $pid 2> /dev/null"
	t_exit=$EPOCHREALTIME
	if kill -0 $pid 2> /dev/null; then
		kv player "still running 20 s after the fault"
		kill -9 $pid
	fi
	wait $pid
	rc=$?
	kv player_rc $rc
	kv player_exit_s $(calc "$t_exit - $t_fault")
	mixer_cget during_$kind
	local t_rec=$EPOCHREALTIME
	recover $kind || { kv error "no recovery from $kind"; return 1; }
	kv recovered_s $(calc "$EPOCHREALTIME - $t_rec")
	mixer_cget after_$kind
}

# ---------------------------------------------------------------- CPU (make bench)

# cpu:NAME (bench/bench.py, the side-by-side section; run under QEMU's
# instruction counting, so that a figure repeats run to run): one way of
# playing CPU_NAME="FILE KIND", each process's CPU counted by cgroup v2
# (cpu.stat's usage_usec, read before and after) in these groups:
#   player  the program that plays (its own figures come from wait4(), by
#           bench_encode spawn); daemon bluez-alsa's source daemon; radio
#           btvirt; bluez bluetoothd; sink bluez-alsa's sink daemon (the
#           speaker); the recorder stays in the root group.
# KIND: null (aplay -D null), encoder (bench_encode, libsbc alone), alsabt
# (aplay through our plugin; alsabt_sbc with CODEC=sbc), bluealsa (aplay
# through bluez-alsa's plugin and its daemon on hci0; started at its first
# run, kept for the next).
CG=/sys/fs/cgroup
cg_move() {
	local g=$1 p
	shift
	for p in "$@"; do echo $p > $CG/$g/cgroup.procs || return 1; done
}
# cg_mount: cgroup2 on $CG; the unstable stack's root has no mount(8), so
# there mount(2) through python3's ctypes.
cg_mount() {
	command -v mount > /dev/null && { mount -t cgroup2 none $CG; return; }
	python3 -c 'import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).mount(b"none", sys.argv[1].encode(), b"cgroup2", 0, None):
    sys.exit(os.strerror(ctypes.get_errno()))' $CG
}
cg_setup() {
	local g
	[ -e $CG/cgroup.controllers ] || cg_mount || return 1
	for g in player daemon radio bluez sink; do mkdir -p $CG/$g || return 1; done
	cg_move radio $(cat /run/btvirt.pid) && cg_move bluez $(pgrep -x bluetoothd) &&
		cg_move sink $(pgrep -x bluealsa)
}
# cg_usage [PREFIX]: per group, "PREFIXGROUP usage_us", read with the
# shell's builtins: a process started per group (awk, as before) took guest
# time between the clock's read and the player's, which the steady window
# then counted as the player's (under TCG a few ms each, the window's ends
# moving run to run).
cg_usage() {
	local g k v
	for g in player daemon radio bluez sink; do
		while read -r k v; do
			[ "$k" = usage_usec ] && { echo "${1:-}$g $v"; break; }
		done < $CG/$g/cpu.stat
	done
}
# The player group's context switches so far, every thread of every process.
# (Not cpu.stat's user/system split: the kernel samples it by ticks, and over
# a few ms of CPU it says little.)
player_csw() {
	local p n=0
	for p in $(cat $CG/player/cgroup.procs); do
		n=$((n + $(cat /proc/$p/task/*/status 2>/dev/null |
			awk '/ctxt_switches/ { s += $2 } END { print s + 0 }')))
	done
	echo "csw $n"
}
# Every thread of the player group: "tasks TID:COMM:NS_ON_CPU:SWITCHES ..."
# (schedstat, status), to say which thread the CPU went to.
player_tasks() {
	local p t line=
	for p in $(cat $CG/player/cgroup.procs); do
		for t in /proc/$p/task/*; do
			line="$line ${t##*/}:$(tr -d ' :' < $t/comm):$(cut -d' ' -f1 $t/schedstat 2>/dev/null):$(awk '/ctxt_switches/ { s += $2 } END { print s + 0 }' $t/status 2>/dev/null)"
		done
	done
	echo "tasks$line"
}
# Samples the groups at MID_FROM_S and MID_TO_S into the play (mid1_, mid2_):
# the streaming alone, without opening, closing or the drain's end.
MID_FROM_S=1.5 MID_TO_S=4.5
mid_sampler() {
	local t _ span
	span=$(calc "$MID_TO_S - $MID_FROM_S")
	sleep $MID_FROM_S
	# The window is from the first group read to the second, timed by the
	# shell's own clock (mid1_rt, mid2_rt: $EPOCHREALTIME, microseconds; _t
	# is /proc/uptime's, 10 ms, for other steps' times), with no process
	# started between clock and reads; the threads are read outside it.
	{ player_tasks; player_csw; } | sed 's/^/mid1_/' >> $OUT
	read -r t _ < /proc/uptime
	{ echo "mid1_rt $EPOCHREALTIME"; echo "mid1_t $t"; cg_usage mid1_; } >> $OUT
	sleep $span
	{ cg_usage mid2_; echo "mid2_rt $EPOCHREALTIME"; } >> $OUT
	read -r t _ < /proc/uptime
	echo "mid2_t $t" >> $OUT
	{ player_csw; player_tasks; } | sed 's/^/mid2_/' >> $OUT
}
# in_player CMD...: CMD in the player group
in_player() { sh -c 'echo $$ > '$CG'/player/cgroup.procs && exec "$@"' sh "$@"; }
bluealsa_source_pcm() {
	dbus-send --system --print-reply --dest=org.bluealsa.source \
		/org/bluealsa/$SRC_HCI/dev_${SINK_ADDR//:/_}/a2dpsrc/sink \
		org.freedesktop.DBus.Properties.Get string:org.bluealsa.PCM1 string:Codec > /dev/null 2>&1
}
SPEAKER=/org/bluez/$SRC_HCI/dev_${SINK_ADDR//:/_}
disconnect_speaker() {
	dbus-send --system --print-reply --dest=org.bluez $SPEAKER org.bluez.Device1.Disconnect \
		> /dev/null 2>&1
	sleep 1
}
# bluez-alsa as the source on hci0: its daemon, and the speaker connected to
# its endpoint (our plugin's, from an earlier run, is gone with its PCM).
# bluealsa_source [ARGS]: ARGS added to the daemon's (e.g. "-c aptX -c aptX-HD")
bluealsa_source() {
	has_owner org.bluealsa.source && return 0
	sh -c 'echo $$ > '$CG'/daemon/cgroup.procs && exec bluealsa -i '$SRC_HCI' -p a2dp-source -B source --a2dp-force-audio-cd '"${1:-}" \
		> $LOGS/bluealsa-source.log 2>&1 &
	wait_for 20 has_owner org.bluealsa.source || { kv error "bluez-alsa's source did not come up"; return 1; }
	disconnect_speaker
	dbus-send --system --print-reply --dest=org.bluez $SPEAKER org.bluez.Device1.ConnectProfile \
		string:$A2DP_SINK_UUID >> $LOGS/bluealsa-source.log 2>&1
	wait_for 20 bluealsa_source_pcm || { kv error "bluez-alsa's source made no PCM for $SINK_ADDR"; return 1; }
}
A2DP_SINK_UUID=0000110b-0000-1000-8000-00805f9b34fb
SPAWN="$BUILD/bench_encode spawn --"
# A root where bench_encode cannot start (it needs libsbc and alsa-lib of
# the sonames it was built with): the same line from python3's os.wait4.
PY_SPAWN='import os, resource, sys, time
t0 = time.monotonic_ns()
pid = os.fork()
if not pid:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, st, ru = os.wait4(pid, 0)
t1 = time.monotonic_ns()
me = resource.getrusage(resource.RUSAGE_SELF)
print("spawn_ns=%d exit_ns=%d status=%d user_s=%.6f sys_s=%.6f maxrss_kb=%d nvcsw=%d nivcsw=%d"
      " self_hwm_kb=%d self_cpu_s=%.6f" % (t0, t1, os.waitstatus_to_exitcode(st), ru.ru_utime,
      ru.ru_stime, ru.ru_maxrss, ru.ru_nvcsw, ru.ru_nivcsw, me.ru_maxrss, me.ru_utime + me.ru_stime))'
spawn_checked=
# profile_around CMD...: CMD (a play), with perf sampling the whole guest on
# its clock for PROFILE_S seconds (bench/profile_vm.py), once the play has
# run PROFILE_FROM_S seconds and the trace below is done.
# Instructions counted, a sample every 50 us of guest time is one every
# 50,000 instructions. Into $SHARE/profile: NAME.data, NAME.pids (the
# player's and the daemon's groups, "GROUP PID..."), and the kernel's
# symbols (kallsyms), which perf on the host cannot know. Before it, apart
# (the tracing costs the traced task), PROFILE_TRACE_S seconds of the
# groups' write() and sendto() calls with their sizes: NAME.trace.data, the
# packets sent (of these processes only: perf's own writes would feed it).
PROFILE_FROM_S=3 PROFILE_S=12 PROFILE_TRACE_S=2
profile_around() {
	local pid rc g
	command -v perf > /dev/null || { kv error "perf not found (linux-perf)"; return 1; }
	[ -e /sys/kernel/tracing/events ] || mount -t tracefs nodev /sys/kernel/tracing 2> /dev/null
	"$@" & pid=$!
	sleep $PROFILE_FROM_S
	mkdir -p $SHARE/profile
	for g in player daemon; do echo $g $(cat $CG/$g/cgroup.procs); done > $SHARE/profile/$name.pids
	# -B: no build ids collected at the end, which takes seconds of the play
	{ perf record -q -B -e syscalls:sys_enter_write -e syscalls:sys_enter_sendto \
			-p $(cat $CG/player/cgroup.procs $CG/daemon/cgroup.procs | paste -sd,) \
			-o /tmp/$name.trace.data -- sleep $PROFILE_TRACE_S &&
		perf record -q -B -a -g -e cpu-clock -c 50000 -o /tmp/$name.data -- sleep $PROFILE_S
	} > $LOGS/$name.perf.log 2>&1 ||
		kv error "perf record: $(tail -c 200 $LOGS/$name.perf.log)"
	wait $pid; rc=$?
	cp /tmp/$name.data /tmp/$name.trace.data $SHARE/profile/ && rm -f /tmp/$name.*data
	cp /proc/kallsyms $SHARE/profile/kallsyms
	kv profile_s $PROFILE_S
	kv trace_s $PROFILE_TRACE_S
	return $rc
}
step_cpu() {
	local name=$1 file kind rc
	if [ -z "$spawn_checked" ] && ! $SPAWN true > /dev/null 2>&1; then
		echo "$PY_SPAWN" > /run/spawn.py
		SPAWN="python3 /run/spawn.py"
	fi
	spawn_checked=1
	read -r file kind <<< "$(eval echo "\${PLAY_$name}")"
	cp "$SHARE/$file" /tmp/play.wav || return 1
	[ -e $CG/player ] || cg_setup || { kv error "no cgroups"; return 1; }
	case $kind in bluealsa|bluealsa_profile) bluealsa_source || return 1 ;; esac
	case $kind in bluealsa_aptx*) bluealsa_source "-c aptX -c aptX-HD" || return 1 ;; esac
	# Each of our runs opens from the same state, the speaker not connected,
	# as a user's first song of the day would (a run that found it still
	# connected from the last one would skip the connection).
	case $kind in alsabt*) disconnect_speaker ;; esac
	case $kind in alsabt*|bluealsa*) capture_start $name || return 1 ;; esac
	sleep 0.5
	cg_usage | sed 's/^/before_/' >> $OUT
	kv t_start $(now)
	local sampler=
	# 44.1 kHz stereo S16 and a 44-byte header: a play long enough to sample
	if [ $(stat -c %s /tmp/play.wav) -gt $((176400 * 5)) ] && [ $kind != null ] &&
		[ $kind != encoder ] && [ "${kind#encoder_}" = $kind ]; then
		mid_sampler & sampler=$!
	fi
	case $kind in
	null) in_player $SPAWN aplay -q -D null /tmp/play.wav ;;
	encoder) in_player $BUILD/bench_encode encode /tmp/play.wav --mode libsbc --min-cpu 0 --rounds 1 ;;
	# alone (MIX=0): the program's own encoder and clock, what is compared
	alsabt) in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS,MIX=0" /tmp/play.wav ;;
	# the same two plays, sampled by perf (bench/profile_vm.py)
	alsabt_profile) profile_around in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS,MIX=0" /tmp/play.wav ;;
	alsabt_mix_profile) profile_around in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS" /tmp/play.wav ;;
	bluealsa_profile) profile_around in_player $SPAWN aplay -q \
		-D "bluealsa:DEV=$SINK_ADDR,PROFILE=a2dp,SRV=org.bluealsa.source" /tmp/play.wav ;;
	alsabt_sbc) in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS,MIX=0,CODEC=sbc" /tmp/play.wav ;;
	# the default (MIX=1): the mixing process it starts is in the player group
	alsabt_mix) in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS" /tmp/play.wav ;;
	bluealsa) in_player $SPAWN aplay -q -D "bluealsa:DEV=$SINK_ADDR,PROFILE=a2dp,SRV=org.bluealsa.source" \
		/tmp/play.wav ;;
	# one codec (the unstable stack: bluez-alsa 4.3, BLUEALSA_ARGS="-c aptX -c aptX-HD")
	encoder_aptx|encoder_aptx_hd)
		in_player $BUILD/bench_encode codecs /tmp/play.wav --codec ${kind#encoder_} --min-cpu 0 ;;
	alsabt_aptx) in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS,MIX=0,CODEC=aptx" /tmp/play.wav ;;
	alsabt_aptx_hd) in_player $SPAWN aplay -q -D "bluetooth:$DEVARGS,MIX=0,CODEC=aptx_hd" /tmp/play.wav ;;
	bluealsa_aptx) in_player $SPAWN aplay -q \
		-D "bluealsa:DEV=$SINK_ADDR,PROFILE=a2dp,CODEC=aptX,SRV=org.bluealsa.source" /tmp/play.wav ;;
	bluealsa_aptx_hd) in_player $SPAWN aplay -q \
		-D "bluealsa:DEV=$SINK_ADDR,PROFILE=a2dp,CODEC=aptX-HD,SRV=org.bluealsa.source" /tmp/play.wav ;;
	*) kv error "no such kind: $kind"; return 1 ;;
	esac > $LOGS/$name.out 2> $LOGS/$name.err
	rc=$?
	kv t_end $(now)
	[ -n "$sampler" ] && wait $sampler
	# bench_encode's own line: the encoder's figures, or aplay's wait4()
	# (its CPU, user and system, and its context switches)
	sed -n '/=/ { s/^/player /; p; q }' $LOGS/$name.out >> $OUT
	if [ $kind != encoder ] && [ "${kind#encoder_}" = $kind ]; then
		grep -q 'status=0 ' $LOGS/$name.out && rc=0 || rc=1
	fi
	# what the daemons do once the player is gone (closing the stream) counts
	sleep 1
	cg_usage | sed 's/^/after_/' >> $OUT
	kv rc $rc
	case $kind in alsabt*|bluealsa*) capture_stop ;; esac
	return $rc
}

# make bench, the receive direction (rxcpu:NAME, PLAY_NAME="FILE KIND"):
# hci1's bluez-alsa (-p a2dp-source, BLUEALSA_ARGS) is the phone and plays
# FILE (aplay -D bluealsa:, in no counted group; its daemon is in "sink");
# the receiver on hci0 records it in the player group:
#   rx_null      arecord -D null, as many frames as FILE (not paced)
#   rx_decoder   bench_encode decode FILE --codec sbc (libsbc alone)
#   rx_alsabt    arecord -D bluetooth:...,CODEC=sbc (our capture; its open
#                connects the phone's A2DP Source)
#   rx_bluealsa  arecord -D bluealsa:...,SRV=org.bluealsa.$RX_BA, bluez-alsa's
#                sink daemon on hci0 (in "daemon"; started at its first run,
#                kept), hci0 connecting the phone's A2DP Source for it
# Each receiving run opens from the same state (hci0 and hci1 disconnected);
# the receiver records until the phone's aplay has ended, then gets SIGINT.
# The groups are read 3.5 s and 6.5 s after the phone's aplay started
# (mid1_, mid2_): the streaming alone (the phone's aplay takes 1.3-2.3 s
# to start streaming, and streams 8 s).  What arrived: captures/NAME.wav.
RX_FROM_S=3.5 RX_TO_S=6.5
# The bus name of bluez-alsa's sink daemon on hci0: bench-bus.conf lets root
# send to org.bluealsa.source only (besides org.bluealsa, hci1's), and this
# boot has no source daemon on hci0 (side_by_side.py's boot has: a shared
# boot needs a name of its own there, e.g. org.bluealsa.sink).
RX_BA=${RX_BA:-source}
RX_UUID_A2DP_SOURCE=0000110a-0000-1000-8000-00805f9b34fb
rx_sink_pcm() {
	dbus-send --system --print-reply --dest=org.bluealsa.$RX_BA \
		/org/bluealsa/$SRC_HCI/dev_${SINK_ADDR//:/_}/a2dpsnk/source \
		org.freedesktop.DBus.Properties.Get string:org.bluealsa.PCM1 string:Codec > /dev/null 2>&1
}
rx_bluealsa_sink() {
	has_owner org.bluealsa.$RX_BA && return 0
	sh -c 'echo $$ > '$CG'/daemon/cgroup.procs && exec bluealsa -i '$SRC_HCI' -p a2dp-sink -B '$RX_BA' --a2dp-force-audio-cd' \
		> $LOGS/bluealsa-sink-$SRC_HCI.log 2>&1 &
	wait_for 20 has_owner org.bluealsa.$RX_BA || { kv error "bluez-alsa's sink on $SRC_HCI did not come up"; return 1; }
	# its endpoint registered with hci0's BlueZ
	wait_for 20 sh -c "dbus-send --system --print-reply --dest=org.bluez /org/bluez/$SRC_HCI \
		org.freedesktop.DBus.Properties.Get string:org.bluez.Adapter1 string:UUIDs | grep -q 0000110b"
}
# the transports' configuration on hci0 (the SBC parameters agreed)
rx_transport_conf() {
	local t
	t=$(dbus-send --system --print-reply --dest=org.bluez / org.freedesktop.DBus.ObjectManager.GetManagedObjects \
		2> /dev/null | grep -o "object path \"/org/bluez/$SRC_HCI/dev_${SINK_ADDR//:/_}/sep[0-9]*/fd[0-9]*\"" |
		head -1 | cut -d'"' -f2)
	[ -n "$t" ] || return 0
	dbus-send --system --print-reply --dest=org.bluez $t org.freedesktop.DBus.Properties.Get \
		string:org.bluez.MediaTransport1 string:Configuration 2> /dev/null | tr -d '\n' |
		sed -n 's/.*array of bytes *\[\([^]]*\)\].*/\1/p' | tr -d ' '
}
step_rxcpu() {
	local name=$1 file kind rc frames dev sampler= rec
	read -r file kind <<< "$(eval echo "\${PLAY_$name}")"
	cp "$SHARE/$file" /tmp/play.wav || return 1
	frames=$(( ($(stat -c %s /tmp/play.wav) - 44) / 4 ))
	mkdir -p $SHARE/captures
	[ -e $CG/player ] || cg_setup || { kv error "no cgroups"; return 1; }
	case $kind in
	rx_null|rx_decoder)
		sleep 0.5
		cg_usage | sed 's/^/before_/' >> $OUT
		kv t_start $(now)
		if [ $kind = rx_null ]; then
			in_player $SPAWN arecord -q -D null -f S16_LE -c 2 -r 44100 -s $frames /tmp/$name.wav
		else
			in_player $BUILD/bench_encode decode /tmp/play.wav --codec sbc --min-cpu 0.6
		fi > $LOGS/$name.out 2> $LOGS/$name.err
		rc=$?
		kv t_end $(now)
		sed -n '/=/ { s/^/player /; p; q }' $LOGS/$name.out >> $OUT
		[ $kind = rx_null ] && { grep -q 'status=0 ' $LOGS/$name.out && rc=0 || rc=1; }
		sleep 1
		cg_usage | sed 's/^/after_/' >> $OUT
		kv rc $rc
		return $rc ;;
	rx_alsabt)
		dev="bluetooth:DEV=$SINK_ADDR,ADAPTER=$SRC_HCI,TIMEOUT=${TIMEOUT_MS:-20000},CODEC=sbc,JITTER_MS=150" ;;
	rx_bluealsa)
		rx_bluealsa_sink || return 1
		dev="bluealsa:DEV=$SINK_ADDR,PROFILE=a2dp,SRV=org.bluealsa.$RX_BA" ;;
	*) kv error "no such kind: $kind"; return 1 ;;
	esac
	kv arecord_device "$dev"
	disconnect_speaker
	sleep 0.5
	cg_usage | sed 's/^/before_/' >> $OUT
	kv t_start $(now)
	if [ $kind = rx_bluealsa ]; then
		# bluez-alsa's PCM exists once the stream is configured: hci0
		# connects the phone's A2DP Source (its endpoint answers)
		dbus-send --system --print-reply --dest=org.bluez $SPEAKER org.bluez.Device1.ConnectProfile \
			string:$RX_UUID_A2DP_SOURCE >> $LOGS/bluealsa-sink-$SRC_HCI.log 2>&1
		wait_for 20 rx_sink_pcm || { kv error "bluez-alsa's sink made no PCM for $SINK_ADDR"; return 1; }
		kv rx_connected $(now)
	fi
	rm -f /run/$name.arecord_end
	# far more frames than the phone plays: SIGINT ends it
	( in_player $SPAWN arecord -q -D "$dev" -f S16_LE -c 2 -r 44100 -s $((frames * 4)) /tmp/$name.wav \
		> $LOGS/$name.out 2> $LOGS/$name.err; rc=$?; now > /run/$name.arecord_end; exit $rc ) &
	PHONE_REC=$!
	if wait_for 40 capture_configured; then kv capture_configured $(now); fi
	PHONE_PCM=/org/bluealsa/$SINK_HCI/dev_${SRC_ADDR//:/_}/a2dpsrc/sink
	if ! wait_for 20 phone_pcm || ! [ -s /run/phone.pcm ]; then
		kv error "the phone (bluez-alsa on $SINK_HCI) made no A2DP source PCM for $SRC_ADDR: $(tail -c 200 $LOGS/$name.err | tr '\n' ' ')"
	else
		kv transport_conf "$(rx_transport_conf)"
		MID_FROM_S=$RX_FROM_S MID_TO_S=$RX_TO_S mid_sampler & sampler=$!
		phone_bluealsa $name
	fi
	# the phone is done: what is still in flight arrives, then the receiver stops
	sleep 0.5
	rec=$(pgrep -x arecord | while read -r p; do
		grep -qx "$CG_PLAYER_REL" /proc/$p/cgroup 2> /dev/null && echo $p; done)
	kv arecord_pids "$rec"
	# (arecord exits 1 on SIGINT, its file complete)
	[ -n "$rec" ] && { kv arecord_sigint $(now); kill -INT $rec; }
	for i in $(seq 100); do kill -0 $PHONE_REC 2> /dev/null || break; sleep 0.1; done
	kill -0 $PHONE_REC 2> /dev/null && { kv arecord_killed yes; kill $rec 2> /dev/null; }
	wait $PHONE_REC
	kv t_end "$(cat /run/$name.arecord_end 2> /dev/null)"
	[ -n "$sampler" ] && wait $sampler
	sed -n '/=/ { s/^/player /; p; q }' $LOGS/$name.out >> $OUT
	sleep 1
	cg_usage | sed 's/^/after_/' >> $OUT
	cp /tmp/$name.wav $SHARE/captures/$name.wav 2> /dev/null
	rc=0
	grep -q '^phone_rc 0' $OUT || rc=1
	[ -n "$rec" ] || rc=1        # the receiver did not last the phone's play
	grep -q 'status=0 ' $LOGS/$name.out || [ -n "$rec" ] || kv error "arecord: $(cat $LOGS/$name.out | tr '\n' ' ') $(tail -c 200 $LOGS/$name.err | tr '\n' ' ')"
	kv rc $rc
	return $rc
}
CG_PLAYER_REL="0::/player"

# ---------------------------------------------------------------- main

say "guest: steps: $STEPS"
failed=0
for s in $STEPS; do
	name=${s%%:*} arg=${s#*:}
	[ "$arg" = "$s" ] && arg=
	label=$name
	case $name in play|pwplay|phone|cpu|rxcpu|voice|pwvoice) label=$arg ;; fault) label=fault_$arg ;; esac
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
dmesg > $LOGS/dmesg.log 2>&1
cp -r $LOGS $SHARE/
sync
exit $failed
