/* The SCO link that carries a headset's voice: opened by the Audio Gateway
 * (us) once a codec is agreed, with that codec's voice setting. */
#ifndef ALSABT_HFP_SCO_H
#define ALSABT_HFP_SCO_H

#include <stdint.h>

/* Voice settings (BT_VOICE): CVSD, the controller encoding 16-bit PCM, or
 * transparent, the host's bytes as they are (mSBC). */
#define SCO_VOICE_CVSD_16BIT  0x0060
#define SCO_VOICE_TRANSPARENT 0x0003

/* "00:1B:66:AA:BB:CC" into the kernel's byte order (reversed): 0, or
 * -EINVAL. */
int sco_parse_address(const char *text, uint8_t out[6]);

/* Connects adapter -> device (addresses as text) with the voice setting,
 * waiting at most timeout_ms: a non-blocking SEQPACKET descriptor, or
 * -errno: -EAFNOSUPPORT (no Bluetooth in this kernel), -EOPNOTSUPP
 * (transparent on a controller without it: fall back to CVSD),
 * -ETIMEDOUT, -EBUSY (another SCO link to that device), ... */
int sco_connect(const char *adapter, const char *device, uint16_t voice, int timeout_ms);

/* The controller's SCO packet size as the kernel reports it; USB
 * controllers report a wrong one, so the link learns the real size from
 * what arrives (hfp.md).  -errno if it cannot say. */
int sco_kernel_mtu(int fd);

#endif
