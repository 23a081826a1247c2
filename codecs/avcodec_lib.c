/* libavcodec, opened with dlopen() once per process (avcodec_lib.h). */
#include <pthread.h>
#include <stdio.h>

#include "avcodec_lib.h"
#include "codec.h"

static struct avcodec_lib lib;
static char lib_why[256];       /* dlerror()'s text lasts until the next call */
static int lib_err;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void load(void)
{
	const struct a2dp_symbol syms[] = {
		{ (void **)&lib.find_encoder, "avcodec_find_encoder" },
		{ (void **)&lib.alloc_context3, "avcodec_alloc_context3" },
		{ (void **)&lib.open2, "avcodec_open2" },
		{ (void **)&lib.free_context, "avcodec_free_context" },
		{ (void **)&lib.send_frame, "avcodec_send_frame" },
		{ (void **)&lib.receive_packet, "avcodec_receive_packet" },
		{ (void **)&lib.packet_alloc, "av_packet_alloc" },
		{ (void **)&lib.packet_free, "av_packet_free" },
		{ (void **)&lib.packet_unref, "av_packet_unref" },
		{ (void **)&lib.frame_alloc, "av_frame_alloc" },
		{ (void **)&lib.frame_free, "av_frame_free" },
		{ (void **)&lib.frame_get_buffer, "av_frame_get_buffer" },
		{ (void **)&lib.frame_make_writable, "av_frame_make_writable" },
		{ (void **)&lib.channel_layout_default, "av_channel_layout_default" },
		{ (void **)&lib.log_get_level, "av_log_get_level" },
		{ (void **)&lib.log_set_level, "av_log_set_level" },
		{ (void **)&lib.find_decoder_by_name, "avcodec_find_decoder_by_name" },
		{ (void **)&lib.send_packet, "avcodec_send_packet" },
		{ (void **)&lib.receive_frame, "avcodec_receive_frame" },
		{ (void **)&lib.frame_unref, "av_frame_unref" },
		{ (void **)&lib.mallocz, "av_mallocz" },
	};

	const char *why = "";

	lib_err = a2dp_load_library(AVCODEC_LIB, syms, sizeof(syms) / sizeof(syms[0]), &why);
	snprintf(lib_why, sizeof(lib_why), "%s", why ? why : "");
}

const struct avcodec_lib *avcodec_lib(const char **why)
{
	pthread_once(&lib_once, load);
	if (lib_err < 0 && why)
		*why = lib_why;
	return lib_err < 0 ? NULL : &lib;
}
