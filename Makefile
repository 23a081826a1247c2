# alsa-bt: ALSA plugins for Bluetooth A2DP speakers, no sound server.
#   make            build the plugins into $(BUILD)/
#   make check      every test: unit, integration against a mock BlueZ (plain,
#                   ASan+UBSan, TSan), fuzzing, and the real stack in a VM
#   make bench      the benchmark (figures for the README); ONLY=capture: its
#                   section 5 alone, ONLY=vm: section 6 (the VM) alone
#   make install    plugins into alsa-lib's plugin dir, config into alsa.conf.d
#   make deps       install the Debian packages needed (as root)

BUILD    ?= build
PREFIX   ?= /usr
SYSCONFDIR ?= /etc
DESTDIR  ?=
ALSA_LIBDIR := $(shell pkg-config --variable=libdir alsa 2>/dev/null)
PLUGINDIR ?= $(patsubst /usr%,$(PREFIX)%,$(ALSA_LIBDIR))/alsa-lib
CONFDIR  ?= $(PREFIX)/share/alsa/alsa.conf.d

CC       ?= cc
CFLAGS   ?= -O2 -g
SANITIZE ?=
PKGS     := alsa dbus-1 sbc
DEP_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEP_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -ldl
# libavcodec's headers only: AAC opens the library with dlopen().
AV_CFLAGS  := $(shell pkg-config --cflags libavcodec libavutil 2>/dev/null)
# The code both plugins share: the D-Bus client of bluetoothd (bluez/), the
# codec table and codecs (codecs/), A2DP streams (a2dp/), headset voice
# (hfp/), options and the per-device state file (common/), and mixing several
# programs on one speaker (mix/: the protocol, the mixer, and its program).
SHARED_DIRS := bluez codecs a2dp hfp common mix
ALL_CFLAGS := $(CFLAGS) -std=gnu11 -Wall -Wextra -fPIC -DPIC -pthread $(SHARED_DIRS:%=-I%) $(DEP_CFLAGS) $(AV_CFLAGS) \
	$(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer)
ALL_LDFLAGS := $(LDFLAGS) -pthread $(if $(SANITIZE),-fsanitize=$(SANITIZE))

SHARED_SRC := $(filter-out mix/mixer_main.c,$(wildcard $(SHARED_DIRS:%=%/*.c)))
SHARED_OBJ := $(SHARED_SRC:%.c=$(BUILD)/%.o)
PCM_SO   := $(BUILD)/libasound_module_pcm_bluetooth.so
CTL_SO   := $(BUILD)/libasound_module_ctl_bluetooth.so
MIXER    := $(BUILD)/alsa-bt-mixer
SINK     := $(BUILD)/rtp_sink
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/%)
BENCH    := $(BUILD)/bench_encode
TOOLS    := $(BUILD)/pcm_client $(BUILD)/ctl_client $(BUILD)/cycle_client $(BUILD)/aac_alone \
	$(BUILD)/phone_source $(BUILD)/capture_client $(BUILD)/hfp_client $(BUILD)/sco_shim.so \
	$(BUILD)/sco_headset $(BUILD)/duplex_client

all: $(PCM_SO) $(CTL_SO) $(MIXER) $(SINK) $(UNIT_BIN) $(TOOLS)

$(BUILD)/%.o: %.c $(wildcard $(SHARED_DIRS:%=%/*.h) pcm_bt/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libalsabt.a: $(SHARED_OBJ)
	$(AR) rcs $@ $^

PCM_OBJ  := $(BUILD)/pcm_bt/pcm_bluetooth.o $(BUILD)/pcm_bt/pcm_capture.o $(BUILD)/pcm_bt/pcm_voice.o \
	$(BUILD)/pcm_bt/pcm_mix.o $(BUILD)/pcm_bt/hw_limits.o
$(PCM_SO): $(PCM_OBJ) $(BUILD)/libalsabt.a common/exports.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,--version-script=common/exports.map -Wl,-z,defs -Wl,-z,nodelete \
		-o $@ $(PCM_OBJ) $(BUILD)/libalsabt.a $(DEP_LIBS)

$(CTL_SO): $(BUILD)/ctl_bt/ctl_bluetooth.o $(BUILD)/libalsabt.a common/exports.map
	$(CC) -shared $(ALL_LDFLAGS) -Wl,--version-script=common/exports.map -Wl,-z,defs -Wl,-z,nodelete \
		-o $@ $(BUILD)/ctl_bt/ctl_bluetooth.o $(BUILD)/libalsabt.a $(DEP_LIBS)

# The mixer of one speaker, started by the PCM (MIX=1); it sits beside the
# plugin, where the PCM looks for it.
$(MIXER): $(BUILD)/mix/mixer_main.o $(BUILD)/libalsabt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# The test speaker links libfreeaptx's and libavcodec's decoders (the plugin
# dlopens the encoders).
$(SINK): $(BUILD)/tests/sink/rtp_sink.o $(BUILD)/libalsabt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS) -lfreeaptx $(shell pkg-config --libs libavcodec libavutil)

$(BUILD)/pcm_client: $(BUILD)/tests/tools/pcm_client.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS) -lm

$(BUILD)/ctl_client: $(BUILD)/tests/tools/ctl_client.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# The AAC reference of the audio tests: libavcodec alone, linked (a test tool).
$(BUILD)/aac_alone: $(BUILD)/tests/tools/aac_alone.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(shell pkg-config --libs libavcodec libavutil)

# The test phone of the capture tests: a file as SBC, aptX, aptX HD or AAC, in
# real time; it links the codec libraries itself (not the plugin's encoders).
$(BUILD)/phone_source: $(BUILD)/tests/tools/phone_source.o $(BUILD)/libalsabt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS) -lfreeaptx $(shell pkg-config --libs libavcodec libavutil)

$(BUILD)/capture_client: $(BUILD)/tests/tools/capture_client.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BUILD)/duplex_client: $(BUILD)/tests/tools/duplex_client.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BUILD)/cycle_client: $(BUILD)/tests/tools/cycle_client.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# hfp/profile.c driven alone (no PCM uses it yet), linked with the shared code.
$(BUILD)/hfp_client: $(BUILD)/tests/tools/hfp_client.o $(BUILD)/libalsabt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

# The HFP tests' radio: the SCO socket, preloaded into the program under
# test, becomes a connection to the scripted headset's voice (sco_headset).
$(BUILD)/sco_shim.so: $(BUILD)/tests/tools/sco_shim.o
	$(CC) -shared $(ALL_LDFLAGS) -o $@ $^ -ldl

$(BUILD)/sco_headset: $(BUILD)/tests/tools/sco_headset.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

$(BUILD)/test_%: $(BUILD)/tests/unit/test_%.o $(BUILD)/libalsabt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS) -lm

# Every suite three times: as built, then with the plugins, the sink, the
# tools and the unit tests built with AddressSanitizer + UndefinedBehavior-
# Sanitizer, then with ThreadSanitizer (the I/O thread against the app's).
SAN_BUILD := $(BUILD)-san
TSAN_BUILD := $(BUILD)-tsan
check: all
	$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) SANITIZE=address,undefined all
	$(MAKE) --no-print-directory BUILD=$(TSAN_BUILD) SANITIZE=thread all
	tests/run-all $(BUILD) all asan:$(SAN_BUILD) tsan:$(TSAN_BUILD)

check-unit: all
	tests/run-all $(BUILD) unit

check-integration: all
	tests/run-all $(BUILD) integration

fuzz: all
	tests/run-all $(BUILD) fuzz

# The real Linux Bluetooth stack in a VM (qemu, Debian's kernel, btvirt,
# bluetoothd, bluez-alsa and PipeWire as speakers); part of make check.
check-system: all
	tests/run-all $(BUILD) system

# The same VM for a person without hardware: make demo [FILE=song.wav]
demo: all
	/usr/bin/python3 tests/system/demo.py $(BUILD) "$(FILE)"

# make bench ONLY=capture: section 5 (receiving from a phone) alone; ONLY=voice:
# section 7 (a headset's voice); ONLY=vm: section 6.
bench: all $(BENCH)
	/usr/bin/python3 bench/bench.py $(BUILD) $(if $(ONLY),--only $(ONLY))

$(BENCH): $(BUILD)/bench/bench_encode.o $(BUILD)/libalsabt.a
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(DEP_LIBS)

install: $(PCM_SO) $(CTL_SO) $(MIXER)
	install -d $(DESTDIR)$(PLUGINDIR) $(DESTDIR)$(CONFDIR) $(DESTDIR)$(SYSCONFDIR)/alsa/conf.d
	install -m 0644 $(PCM_SO) $(CTL_SO) $(DESTDIR)$(PLUGINDIR)/
	install -m 0755 $(MIXER) $(DESTDIR)$(PLUGINDIR)/
	install -m 0644 conf/20-bluetooth.conf $(DESTDIR)$(CONFDIR)/
	ln -sf $(CONFDIR)/20-bluetooth.conf $(DESTDIR)$(SYSCONFDIR)/alsa/conf.d/20-bluetooth.conf

uninstall:
	rm -f $(DESTDIR)$(PLUGINDIR)/libasound_module_pcm_bluetooth.so \
		$(DESTDIR)$(PLUGINDIR)/libasound_module_ctl_bluetooth.so \
		$(DESTDIR)$(PLUGINDIR)/alsa-bt-mixer \
		$(DESTDIR)$(CONFDIR)/20-bluetooth.conf $(DESTDIR)$(SYSCONFDIR)/alsa/conf.d/20-bluetooth.conf

deps:
	tools/install-deps

clean:
	rm -rf $(BUILD)

.PHONY: all check check-unit check-integration check-system fuzz demo bench install uninstall deps clean
