/* libavcodec, opened with dlopen() once per process: the functions the AAC
 * codec (codecs/aac_codec.c) and bench_encode's AAC-alone figure call.
 * Its structures differ between major versions, so only the major this was
 * built against is opened; libavutil comes with libavcodec, and dlsym on its
 * handle finds both. */
#ifndef ALSABT_AVCODEC_LIB_H
#define ALSABT_AVCODEC_LIB_H

#include <libavcodec/avcodec.h>
#include <libavutil/channel_layout.h>
#include <libavutil/frame.h>
#include <libavutil/log.h>
#include <libavutil/mem.h>

#define AVCODEC_STR_(x) #x
#define AVCODEC_STR(x) AVCODEC_STR_(x)
#define AVCODEC_LIB "libavcodec.so." AVCODEC_STR(LIBAVCODEC_VERSION_MAJOR)

struct avcodec_lib {
	__typeof__(avcodec_find_encoder) *find_encoder;
	__typeof__(avcodec_alloc_context3) *alloc_context3;
	__typeof__(avcodec_open2) *open2;
	__typeof__(avcodec_free_context) *free_context;
	__typeof__(avcodec_send_frame) *send_frame;
	__typeof__(avcodec_receive_packet) *receive_packet;
	__typeof__(av_packet_alloc) *packet_alloc;
	__typeof__(av_packet_free) *packet_free;
	__typeof__(av_packet_unref) *packet_unref;
	__typeof__(av_frame_alloc) *frame_alloc;
	__typeof__(av_frame_free) *frame_free;
	__typeof__(av_frame_get_buffer) *frame_get_buffer;
	__typeof__(av_frame_make_writable) *frame_make_writable;
	__typeof__(av_channel_layout_default) *channel_layout_default;
	__typeof__(av_log_get_level) *log_get_level;
	__typeof__(av_log_set_level) *log_set_level;
	__typeof__(avcodec_find_decoder_by_name) *find_decoder_by_name;
	__typeof__(avcodec_send_packet) *send_packet;
	__typeof__(avcodec_receive_frame) *receive_frame;
	__typeof__(av_frame_unref) *frame_unref;
	__typeof__(av_mallocz) *mallocz;
};

/* The library's functions, or NULL with *why saying what is missing. */
const struct avcodec_lib *avcodec_lib(const char **why);

#endif
