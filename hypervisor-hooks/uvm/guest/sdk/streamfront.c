/*
 * streamfront.c - stream device front end (protocol: uvm_dev.h; API and
 * rules: streamfront.h).
 *
 * Rings: tx (guest -> host) at UVM_STREAM_TX_PFN, rx (host -> guest) at
 * UVM_STREAM_RX_PFN, each a struct uvm_bytering whose size the host sets.
 * Messages start at 8-byte aligned indices and may wrap.  The private
 * indices sf_tx_prod / sf_rx_cons are the truth; the shared prod/cons
 * are published copies, and the peer's indices are read once per pass
 * and checked (a distance beyond the ring size marks the device broken).
 *
 * Connection states:
 *   FREE     id unused
 *   OPEN     OPEN received; the application owns the id
 *   CLOSING  the application closed it (or we refused it): our CLOSE is
 *            queued or sent, waiting for the host's CLOSE
 * Flags: PEER_CLOSED (host CLOSE received), CLOSE_QUEUED (our CLOSE not
 * yet on the ring), WANT_WRITE (a short write, report WRITABLE later).
 * An id returns to FREE once both CLOSEs are through.
 *
 * Credit: peer_credit is what the host may still send (starts at
 * UVM_STREAM_WINDOW = the receive buffer size); bytes the application
 * reads become `owed` and go back in one CREDIT per connection per
 * flush.  send_credit is what we may still send.
 *
 * Lists (intrusive, by id, 0 ends): `ready` is the FIFO of ids with
 * events to report; `ctl` holds ids with a CREDIT or CLOSE to send.
 */
#include "sdk.h"
#include "uvm_dev.h"
#include "streamfront.h"

#define SF_HDR ((uint32_t)sizeof(struct uvm_stream_hdr))
#define SF_ALIGN(n) (((n) + UVM_STREAM_ALIGN - 1) & ~(uint32_t)(UVM_STREAM_ALIGN - 1))
#define SF_RBUF_PAGES (UVM_STREAM_WINDOW / UVM_PAGE_SIZE)
#define SF_MAX_CREDIT 0x40000000u

enum sf_state { SF_FREE = 0, SF_OPEN, SF_CLOSING };

#define SF_PEER_CLOSED  0x1u
#define SF_CLOSE_QUEUED 0x2u
#define SF_WANT_WRITE   0x4u
#define SF_IN_READY     0x8u
#define SF_IN_CTL       0x10u

struct sf_conn {
	uint8_t state;
	uint8_t flags;
	uint8_t events;
	uint8_t pad;
	uint32_t next_ready;
	uint32_t next_ctl;
	uint32_t rhead;        /* read position in rbuf */
	uint32_t rlen;         /* bytes buffered */
	uint32_t peer_credit;  /* bytes the host may still send */
	uint32_t owed;         /* consumed, not yet granted back */
	uint32_t send_credit;  /* bytes we may still send */
	uint8_t *rbuf;         /* UVM_STREAM_WINDOW bytes */
};

/* Allocated by stream_init (kept out of .bss: every guest links the SDK). */
static struct sf_conn *sf_conns;

#define SF_CONNS_PAGES \
	((sizeof(struct sf_conn) * (UVM_STREAM_MAX_CONNS + 1) + UVM_PAGE_SIZE - 1) / \
	 UVM_PAGE_SIZE)
static struct uvm_bytering *sf_tx, *sf_rx;
static uint32_t sf_tx_size, sf_rx_size;
static uint32_t sf_tx_prod, sf_rx_cons;
static uint32_t sf_tx_told, sf_rx_told; /* indices the host was last told */
static uint32_t sf_port;
static uint32_t sf_ready_head, sf_ready_tail, sf_ctl_head;
static uint32_t sf_nopen;
static int sf_up, sf_broken, sf_dirty, sf_tx_waiting;
static struct stream_stats sf_stats;

static uint32_t sf_min(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static struct sf_conn *sf_get(uint32_t id)
{
	if (sf_conns == NULL || id == 0 || id > UVM_STREAM_MAX_CONNS)
		return NULL;
	return &sf_conns[id];
}

/* ---- rings ------------------------------------------------------------ */

static int sf_ring_ok(struct uvm_bytering *r, uint32_t *size)
{
	uint32_t s = UVM_RING_LOAD(&r->size);
	uint64_t room = UVM_STREAM_RING_PAGES * UVM_PAGE_SIZE - UVM_BYTERING_HEADER;

	if (s < 1024 || (s & (s - 1)) != 0 || s > room)
		return 0;
	*size = s;
	return 1;
}

static void sf_copy_out(const struct uvm_bytering *r, uint32_t size,
			uint32_t at, void *dst, uint32_t n)
{
	uint32_t off = at & (size - 1), first = sf_min(n, size - off);

	memcpy(dst, r->data + off, first);
	memcpy((uint8_t *)dst + first, r->data, n - first);
}

static void sf_copy_in(struct uvm_bytering *r, uint32_t size, uint32_t at,
		       const void *src, uint32_t n)
{
	uint32_t off = at & (size - 1), first = sf_min(n, size - off);

	memcpy(r->data + off, src, first);
	memcpy(r->data, (const uint8_t *)src + first, n - first);
}

static void sf_break(const char *why)
{
	if (!sf_broken)
		printf("streamfront: device disabled: %s\n", why);
	sf_broken = 1;
}

/* Free bytes on tx (multiple of 8), or 0 when the host's cons is bad. */
static uint32_t sf_tx_free(void)
{
	uint32_t cons = UVM_RING_LOAD_ACQUIRE(&sf_tx->cons);
	uint32_t used = sf_tx_prod - cons;

	if (used > sf_tx_size) {
		sf_break("tx cons out of range");
		return 0;
	}
	return (sf_tx_size - used) & ~(uint32_t)(UVM_STREAM_ALIGN - 1);
}

/* Append one message; the caller checked the space. */
static void sf_put(uint16_t type, uint32_t conn, uint32_t arg,
		   const void *data, uint32_t len)
{
	struct uvm_stream_hdr h = { type, 0, conn, len, arg };
	uint32_t total = SF_ALIGN(SF_HDR + len);

	sf_copy_in(sf_tx, sf_tx_size, sf_tx_prod, &h, SF_HDR);
	if (len > 0)
		sf_copy_in(sf_tx, sf_tx_size, sf_tx_prod + SF_HDR, data, len);
	sf_tx_prod += total;
	UVM_RING_STORE_RELEASE(&sf_tx->prod, sf_tx_prod);
	sf_dirty = 1;
}

/* ---- lists -------------------------------------------------------------- */

static void sf_raise(uint32_t id, uint8_t ev)
{
	struct sf_conn *c = &sf_conns[id];

	c->events |= ev;
	if (c->flags & SF_IN_READY)
		return;
	c->flags |= SF_IN_READY;
	c->next_ready = 0;
	if (sf_ready_tail != 0)
		sf_conns[sf_ready_tail].next_ready = id;
	else
		sf_ready_head = id;
	sf_ready_tail = id;
}

static uint32_t sf_pop_ready(void)
{
	uint32_t id = sf_ready_head;

	if (id == 0)
		return 0;
	sf_ready_head = sf_conns[id].next_ready;
	if (sf_ready_head == 0)
		sf_ready_tail = 0;
	sf_conns[id].flags &= ~SF_IN_READY;
	return id;
}

static void sf_want_ctl(uint32_t id)
{
	struct sf_conn *c = &sf_conns[id];

	if (c->flags & SF_IN_CTL)
		return;
	c->flags |= SF_IN_CTL;
	c->next_ctl = sf_ctl_head;
	sf_ctl_head = id;
}

/* ---- connection life ---------------------------------------------------- */

static void sf_release(uint32_t id)
{
	struct sf_conn *c = &sf_conns[id];

	if (c->rbuf != NULL)
		free_pages(c->rbuf, SF_RBUF_PAGES);
	/* Links stay: a listed FREE id is skipped when reached. */
	c->state = SF_FREE;
	c->flags &= SF_IN_READY | SF_IN_CTL;
	c->events = 0;
	memset(&c->rhead, 0, sizeof(*c) - offsetof(struct sf_conn, rhead));
	sf_stats.closed++;
}

/* Our side is done with id: queue our CLOSE. */
static void sf_start_close(uint32_t id)
{
	struct sf_conn *c = &sf_conns[id];

	c->state = SF_CLOSING;
	c->events = 0;
	c->flags = (uint8_t)((c->flags & ~SF_WANT_WRITE) | SF_CLOSE_QUEUED);
	if (c->rbuf != NULL) {
		free_pages(c->rbuf, SF_RBUF_PAGES);
		c->rbuf = NULL;
	}
	c->rlen = 0;
	sf_want_ctl(id);
}

static void sf_on_open(uint32_t id, uint32_t credit)
{
	struct sf_conn *c = &sf_conns[id];

	if (c->state != SF_FREE) {
		sf_stats.bad_msgs++;
		return;
	}
	memset(&c->rhead, 0, sizeof(*c) - offsetof(struct sf_conn, rhead));
	c->state = SF_OPEN;
	c->flags &= SF_IN_READY | SF_IN_CTL;
	c->peer_credit = UVM_STREAM_WINDOW;
	c->send_credit = sf_min(credit, SF_MAX_CREDIT);
	c->rbuf = alloc_pages(SF_RBUF_PAGES);
	if (c->rbuf == NULL) {
		sf_stats.refused++;
		sf_start_close(id);
		return;
	}
	sf_nopen++;
	sf_stats.opened++;
	sf_raise(id, STREAM_EV_OPEN);
}

static void sf_on_data(uint32_t id, uint32_t at, uint32_t len)
{
	struct sf_conn *c = &sf_conns[id];
	uint32_t n = len, tail, first;

	if (c->state != SF_OPEN || (c->flags & SF_PEER_CLOSED))
		return; /* in flight when we closed: dropped */
	if (n > c->peer_credit || n > UVM_STREAM_WINDOW - c->rlen) {
		sf_stats.bad_msgs++;
		n = sf_min(c->peer_credit, UVM_STREAM_WINDOW - c->rlen);
	}
	tail = (c->rhead + c->rlen) & (UVM_STREAM_WINDOW - 1);
	first = sf_min(n, UVM_STREAM_WINDOW - tail);
	sf_copy_out(sf_rx, sf_rx_size, at, c->rbuf + tail, first);
	sf_copy_out(sf_rx, sf_rx_size, at + first, c->rbuf, n - first);
	c->rlen += n;
	c->peer_credit -= n;
	sf_stats.rx_bytes += n;
	if (n > 0)
		sf_raise(id, STREAM_EV_READABLE);
}

static void sf_on_close(uint32_t id)
{
	struct sf_conn *c = &sf_conns[id];

	if (c->state == SF_OPEN && !(c->flags & SF_PEER_CLOSED)) {
		c->flags |= SF_PEER_CLOSED;
		sf_raise(id, STREAM_EV_HUP);
	} else if (c->state == SF_CLOSING && !(c->flags & SF_PEER_CLOSED)) {
		c->flags |= SF_PEER_CLOSED;
		if (!(c->flags & SF_CLOSE_QUEUED))
			sf_release(id);
	} else {
		sf_stats.bad_msgs++;
	}
}

static void sf_on_credit(uint32_t id, uint32_t arg)
{
	struct sf_conn *c = &sf_conns[id];

	if (c->state != SF_OPEN)
		return;
	c->send_credit = sf_min(c->send_credit + sf_min(arg, SF_MAX_CREDIT),
				SF_MAX_CREDIT);
	if ((c->flags & SF_WANT_WRITE) && c->send_credit > 0) {
		c->flags &= ~SF_WANT_WRITE;
		sf_raise(id, STREAM_EV_WRITABLE);
	}
}

/* ---- rx ----------------------------------------------------------------- */

static void sf_dispatch(const struct uvm_stream_hdr *h, uint32_t at)
{
	if (sf_get(h->conn) == NULL) {
		sf_stats.bad_msgs++;
		return;
	}
	switch (h->type) {
	case UVM_STREAM_OPEN:
		sf_on_open(h->conn, h->arg);
		break;
	case UVM_STREAM_DATA:
		sf_on_data(h->conn, at, h->len);
		break;
	case UVM_STREAM_CLOSE:
		sf_on_close(h->conn);
		break;
	case UVM_STREAM_CREDIT:
		sf_on_credit(h->conn, h->arg);
		break;
	default:
		sf_stats.bad_msgs++;
		break;
	}
}

/* Consume every complete message on rx. */
static void sf_rx_process(void)
{
	uint32_t prod = UVM_RING_LOAD_ACQUIRE(&sf_rx->prod);
	uint32_t avail = prod - sf_rx_cons, start = sf_rx_cons;

	if (avail > sf_rx_size) {
		sf_break("rx prod out of range");
		return;
	}
	while (avail >= SF_HDR && !sf_broken) {
		struct uvm_stream_hdr h;
		uint32_t total;

		sf_copy_out(sf_rx, sf_rx_size, sf_rx_cons, &h, SF_HDR);
		if (h.len > UVM_STREAM_MAX_DATA) {
			sf_break("rx message longer than UVM_STREAM_MAX_DATA");
			break;
		}
		total = SF_ALIGN(SF_HDR + h.len);
		if (total > avail)
			break; /* not all published yet */
		if (h.type != UVM_STREAM_DATA && h.len != 0)
			sf_stats.bad_msgs++;
		else
			sf_dispatch(&h, sf_rx_cons + SF_HDR);
		sf_rx_cons += total;
		avail -= total;
	}
	if (sf_rx_cons != start) {
		UVM_RING_STORE_RELEASE(&sf_rx->cons, sf_rx_cons);
		sf_dirty = 1;
	}
}

/* ---- tx control messages ------------------------------------------------- */

/* Send what the ctl list holds while there is room; the rest stays. */
static void sf_ctl_flush(void)
{
	uint32_t id;

	while ((id = sf_ctl_head) != 0 && !sf_broken) {
		struct sf_conn *c = &sf_conns[id];

		if (sf_tx_free() < SF_HDR)
			break;
		sf_ctl_head = c->next_ctl;
		c->flags &= ~SF_IN_CTL;
		if (c->flags & SF_CLOSE_QUEUED) {
			sf_put(UVM_STREAM_CLOSE, id, 0, NULL, 0);
			c->flags &= ~SF_CLOSE_QUEUED;
			if (c->flags & SF_PEER_CLOSED)
				sf_release(id);
		} else if (c->state == SF_OPEN && c->owed > 0) {
			sf_put(UVM_STREAM_CREDIT, id, c->owed, NULL, 0);
			c->peer_credit += c->owed;
			c->owed = 0;
		}
	}
	if (sf_ctl_head != 0)
		sf_tx_waiting = 1;
}

/* Ring space came back: wake the writers that ran out of it. */
static void sf_tx_wake(void)
{
	if (!sf_tx_waiting || sf_tx_free() < sf_tx_size / 4)
		return;
	sf_tx_waiting = 0;
	for (uint32_t id = 1; id <= UVM_STREAM_MAX_CONNS; id++) {
		struct sf_conn *c = &sf_conns[id];

		if (c->state == SF_OPEN && (c->flags & SF_WANT_WRITE) &&
		    c->send_credit > 0) {
			c->flags &= ~SF_WANT_WRITE;
			sf_raise(id, STREAM_EV_WRITABLE);
		}
	}
}

/* Is ev in (old, new] (modulo 2^32)? */
static int sf_event_in(uint32_t ev, uint32_t old, uint32_t new)
{
	return (uint32_t)(new - ev) < (uint32_t)(new - old);
}

/*
 * Notify when the host asked for it: it set tx prod_event (waiting for
 * messages) or rx cons_event (waiting for rx room) inside the range we
 * moved since the last notification.  Our indices were published before
 * the events are read (seq_cst), the host does the converse, so one of
 * the two sides sees the other.
 */
void stream_flush(void)
{
	int tell;

	if (!sf_up || sf_broken)
		return;
	sf_ctl_flush();
	if (!sf_dirty)
		return;
	sf_dirty = 0;
	UVM_RING_MB();
	tell = sf_event_in(UVM_RING_LOAD_SC(&sf_tx->prod_event), sf_tx_told,
			   sf_tx_prod) ||
	       sf_event_in(UVM_RING_LOAD_SC(&sf_rx->cons_event), sf_rx_told,
			   sf_rx_cons);
	sf_tx_told = sf_tx_prod;
	sf_rx_told = sf_rx_cons;
	if (tell)
		evtchn_notify(sf_port);
}

/* ---- public --------------------------------------------------------------- */

int stream_init(void)
{
	uint32_t n = sdk_shared_info->nr_devices, i;

	if (sf_up)
		return 0;
	if (n > UVM_MAX_DEVICES)
		n = UVM_MAX_DEVICES;
	for (i = 0; i < n; i++)
		if (sdk_shared_info->devices[i].type == UVM_DEV_STREAM)
			break;
	if (i == n)
		return -ENODEV;
	sf_port = sdk_shared_info->devices[i].port;
	if (sf_port == 0 || sf_port >= UVM_NR_EVTCHN)
		return -ENODEV;
	sf_tx = pfn_to_virt(UVM_STREAM_TX_PFN);
	sf_rx = pfn_to_virt(UVM_STREAM_RX_PFN);
	if (!sf_ring_ok(sf_tx, &sf_tx_size) || !sf_ring_ok(sf_rx, &sf_rx_size))
		return -ENODEV;
	sf_tx_prod = UVM_RING_LOAD(&sf_tx->prod);
	sf_rx_cons = UVM_RING_LOAD(&sf_rx->cons);
	if ((sf_tx_prod | sf_rx_cons) & (UVM_STREAM_ALIGN - 1))
		return -ENODEV;
	sf_tx_told = sf_tx_prod;
	sf_rx_told = sf_rx_cons;
	sf_conns = alloc_pages(SF_CONNS_PAGES);
	if (sf_conns == NULL)
		return -ENOMEM;
	memset(sf_conns, 0, SF_CONNS_PAGES * UVM_PAGE_SIZE);
	evtchn_mask(sf_port);
	sf_up = 1;
	return 0;
}

/* Ask to be woken for rx data (and tx space), then look once more. */
static int sf_arm(void)
{
	UVM_RING_STORE_SC(&sf_rx->prod_event, sf_rx_cons + 1);
	if (sf_tx_waiting)
		UVM_RING_STORE_SC(&sf_tx->cons_event,
				  UVM_RING_LOAD(&sf_tx->cons) + 1);
	if (UVM_RING_LOAD_SC(&sf_rx->prod) != sf_rx_cons)
		return 1;
	return sf_tx_waiting && sf_tx_free() >= sf_tx_size / 4;
}

static int sf_collect(struct stream_event *ev, int max)
{
	int n = 0;

	while (n < max) {
		uint32_t id = sf_pop_ready();
		struct sf_conn *c;

		if (id == 0)
			break;
		c = &sf_conns[id];
		if (c->state != SF_OPEN || c->events == 0)
			continue;
		ev[n].conn = id;
		ev[n].events = c->events;
		c->events = 0;
		n++;
	}
	return n;
}

int stream_poll(struct stream_event *ev, int max, int block)
{
	int n;

	if (!sf_up)
		return -EIO;
	for (;;) {
		(void)evtchn_test_and_clear(sf_port);
		sf_rx_process();
		stream_flush();
		sf_tx_wake();
		if (sf_broken)
			return -EIO;
		n = sf_collect(ev, max);
		if (n > 0 || !block || max <= 0)
			return n;
		if (sf_arm())
			continue;
		evtchn_bind_self(sf_port);
		evtchn_unmask(sf_port);
		if (!evtchn_is_pending(sf_port))
			(void)hc_block();
		evtchn_mask(sf_port);
	}
}

size_t stream_readable(uint32_t id)
{
	struct sf_conn *c = sf_get(id);

	return c != NULL && c->state == SF_OPEN ? c->rlen : 0;
}

size_t stream_read(uint32_t id, void *buf, size_t len)
{
	struct sf_conn *c = sf_get(id);
	uint32_t n, first;

	if (c == NULL || c->state != SF_OPEN || sf_broken)
		return 0;
	n = (uint32_t)(len < c->rlen ? len : c->rlen);
	first = sf_min(n, UVM_STREAM_WINDOW - c->rhead);
	memcpy(buf, c->rbuf + c->rhead, first);
	memcpy((uint8_t *)buf + first, c->rbuf, n - first);
	c->rhead = (c->rhead + n) & (UVM_STREAM_WINDOW - 1);
	c->rlen -= n;
	if (n > 0 && !(c->flags & SF_PEER_CLOSED)) {
		c->owed += n;
		sf_want_ctl(id);
	}
	return n;
}

size_t stream_writable(uint32_t id)
{
	struct sf_conn *c = sf_get(id);
	uint32_t space;

	if (c == NULL || c->state != SF_OPEN || sf_broken)
		return 0;
	space = sf_tx_free();
	if (space <= SF_HDR)
		return 0;
	return sf_min(c->send_credit, space - SF_HDR);
}

size_t stream_write(uint32_t id, const void *buf, size_t len)
{
	struct sf_conn *c = sf_get(id);
	const uint8_t *p = buf;
	size_t done = 0;

	if (c == NULL || c->state != SF_OPEN || sf_broken)
		return 0;
	while (done < len) {
		uint32_t space = sf_tx_free(), n;

		if (space <= SF_HDR || c->send_credit == 0) {
			if (space <= SF_HDR)
				sf_tx_waiting = 1;
			break;
		}
		n = sf_min(sf_min(c->send_credit, UVM_STREAM_MAX_DATA),
			   space - SF_HDR);
		if (len - done < n)
			n = (uint32_t)(len - done);
		sf_put(UVM_STREAM_DATA, id, 0, p + done, n);
		c->send_credit -= n;
		done += n;
		sf_stats.tx_bytes += n;
	}
	if (done < len)
		c->flags |= SF_WANT_WRITE;
	return done;
}

void stream_close(uint32_t id)
{
	struct sf_conn *c = sf_get(id);

	if (c == NULL || c->state != SF_OPEN)
		return;
	sf_nopen--;
	sf_start_close(id);
}

uint32_t stream_conn_count(void)
{
	return sf_nopen;
}

void stream_get_stats(struct stream_stats *st)
{
	*st = sf_stats;
}
