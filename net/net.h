/*
 * Network backends (DESIGN.md §3: net/ knows nothing of KVM). A backend
 * moves Ethernet frames between a device model (virtio-net) and the host:
 * tap (a kernel TAP interface, with the virtio-net header when the kernel
 * offers IFF_VNET_HDR) or user (libslirp: NAT, DHCP, DNS, host forwards).
 * Each backend is one file exporting one const struct net_backend_ops.
 *
 * Frames carry a struct net_vnet_hdr prefix in both directions exactly when
 * net_backend_has_vnet_hdr() is true; offloads (partial checksums, TSO) are
 * only possible then.
 *
 * Threads: after net_backend_open() every call, and every peer callback,
 * happens on the thread running @base (the VM's I/O thread). Open and close
 * may run on another thread only while that loop is not dispatching the
 * backend's events (before the VM starts, after its threads are joined).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "common/error.h"

struct event_base;
struct net_backend;

/* virtio_net_hdr_v1 (virtio 1.x §5.1.6), also the tap IFF_VNET_HDR layout. */
struct net_vnet_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
} __attribute__((packed));

#define NET_HDR_F_NEEDS_CSUM 1u
#define NET_HDR_F_DATA_VALID 2u
#define NET_HDR_GSO_NONE 0u
#define NET_HDR_GSO_TCPV4 1u
#define NET_HDR_GSO_UDP 3u
#define NET_HDR_GSO_TCPV6 4u
#define NET_HDR_GSO_ECN 0x80u

/* Largest frame a backend passes (64 KiB GSO frame plus the header). */
#define NET_MAX_FRAME (65536u + sizeof(struct net_vnet_hdr) + 64u)

/* Offloads the guest accepts on receive (net_backend_set_offload). */
enum {
	NET_OFFLOAD_CSUM = 1u << 0,
	NET_OFFLOAD_TSO4 = 1u << 1,
	NET_OFFLOAD_TSO6 = 1u << 2,
	NET_OFFLOAD_ECN = 1u << 3,
	NET_OFFLOAD_UFO = 1u << 4,
};

/* What the device model provides to receive frames. */
struct net_peer {
	/*
	 * One frame from the host side. Return 0 when taken (or deliberately
	 * dropped), -EAGAIN when the guest has no buffers: the backend keeps
	 * the frame and stops reading until net_backend_rx_resume(). Never
	 * called from inside net_backend_send() (frames a backend produces
	 * while sending are deferred), but net_backend_rx_resume() delivers
	 * synchronously, so call it without the locks receive takes.
	 */
	int (*receive)(void *opaque, const struct iovec *iov, unsigned cnt);
	/*
	 * Whether receive would take a frame now; NULL: always. When false,
	 * a backend with a host queue (tap) reads nothing more and leaves the
	 * frames there, where a hand-over of its fd finds them, until
	 * net_backend_rx_resume(), which the peer then owes it. A frame that
	 * still meets -EAGAIN (one too large for the buffers there are) waits
	 * in the backend as without this.
	 */
	bool (*can_receive)(void *opaque);
	void *opaque;
};

struct net_backend_config {
	const char *backend;  /* "user" or "tap" */
	const char *ifname;   /* tap: interface name (attached, or created if absent) */
	int fd;		      /* tap: an open TAP fd (ownership taken), or -1 */
	char *const *hostfwd; /* user: NULL-terminated "tcp::2222-:22" rules, may be NULL */
	const char *id;	      /* for messages */
};

struct net_backend_ops {
	const char *name;
	/*
	 * Set up nb->priv and nb->vnet_hdr. On failure nothing is left
	 * allocated or registered and *errp names the interface or rule.
	 */
	int (*open)(struct net_backend *nb, const struct net_backend_config *cfg,
		    struct error **errp);
	/* Release everything; pending frames are dropped. */
	void (*close)(struct net_backend *nb);
	/* Send one frame from the guest: 0, or -errno (the frame is dropped). */
	int (*send)(struct net_backend *nb, const struct iovec *iov, unsigned cnt);
	/* The peer has buffers again: deliver what is pending, resume reading. */
	void (*rx_resume)(struct net_backend *nb);
	/* Tell the host which offloads the guest accepts; may be NULL. */
	int (*set_offload)(struct net_backend *nb, unsigned offloads);
	/* The open host fd a local migration may hand over (tap); NULL or -1: none. */
	int (*host_fd)(struct net_backend *nb);
	/* Close that fd for good (net_backend_detach); NULL when host_fd is. */
	void (*detach)(struct net_backend *nb);
};

struct net_backend {
	const struct net_backend_ops *ops;
	struct event_base *base;
	struct net_peer peer;
	bool vnet_hdr;
	void *priv;
	uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped;
};

extern const struct net_backend_ops net_tap_ops;
extern const struct net_backend_ops net_slirp_ops;

/*
 * Open the backend named by cfg->backend, delivering received frames to
 * @peer (copied) from @base's thread. *ret is freed with net_backend_close().
 */
int net_backend_open(const struct net_backend_config *cfg, struct event_base *base,
		     const struct net_peer *peer, struct net_backend **ret, struct error **errp);
/* NULL is fine. */
void net_backend_close(struct net_backend *nb);

int net_backend_send(struct net_backend *nb, const struct iovec *iov, unsigned cnt);
void net_backend_rx_resume(struct net_backend *nb);
int net_backend_set_offload(struct net_backend *nb, unsigned offloads);
bool net_backend_has_vnet_hdr(const struct net_backend *nb);

/*
 * Tap NICs by fd (docs/migration.md): net_backend_host_fd is the backend's
 * open host fd (borrowed) that a local migration passes to the destination,
 * -1 if it has none (user) or was detached. net_backend_detach: the
 * destination serves the interface and owns the guest's RAM now; close that
 * fd here, drop a pending frame (none when the peer has can_receive and the
 * frame fitted), read nothing more, drop every frame sent afterwards, and
 * never call the peer again (a user backend's late frames are dropped). Both may
 * run on another thread while @base's loop does not dispatch the backend's
 * events (the VM's I/O thread held).
 */
int net_backend_host_fd(struct net_backend *nb);
void net_backend_detach(struct net_backend *nb);

/*
 * The name of the tap interface @fd is attached to (TUNGETIFF), into
 * @name; fails unless @fd is a tap (not a tun, not another file).
 */
int net_tap_fd_name(int fd, char name[16], struct error **errp);
/*
 * Whether the tap @fd is attached to lives in this process's network
 * namespace (TUNGETDEVNETNS): 1 yes, 0 no, -errno when the kernel cannot
 * tell (too old, no CAP_NET_ADMIN there).
 */
int net_tap_fd_in_our_netns(int fd);

/*
 * A NIC's self-announcement (QEMU's announce-self, after a migration): a
 * broadcast RARP "request reverse" (RFC 903) from and about @mac, padded to
 * Ethernet's 60-byte minimum, so switches learn the port the NIC is behind
 * now. Fills @buf; returns NET_RARP_LEN.
 */
#define NET_RARP_LEN 60
size_t net_rarp_frame(uint8_t buf[NET_RARP_LEN], const uint8_t mac[6]);

/*
 * Parse a host forward "tcp|udp:[haddr]:hport-[gaddr]:gport" (QEMU's
 * hostfwd syntax). Missing addresses are 0.0.0.0 (host) and 10.0.2.15
 * (guest). Addresses are in network order, ports in host order.
 */
struct net_hostfwd {
	bool udp;
	uint32_t host_addr;
	uint16_t host_port;
	uint32_t guest_addr;
	uint16_t guest_port;
};
int net_hostfwd_parse(const char *rule, struct net_hostfwd *ret, struct error **errp);

/* Parse "52:54:00:12:34:56"; -EINVAL unless six hex pairs and not multicast. */
int net_mac_parse(const char *s, uint8_t ret[6]);
