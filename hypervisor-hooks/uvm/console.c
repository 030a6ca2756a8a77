/*
 * console.c - the console back-end: drains the guest's console ring
 * (struct uvm_console_ring at pfn UVM_CONSOLE_PFN) to a host descriptor.
 *
 * The back-end's only state is out_cons, which lives in the ring page in
 * guest memory, so a saved guest carries its console position with it and
 * the device has no private state to save.  Producer indices come from the
 * guest and are untrusted: a producer more than a ring ahead is a guest bug
 * that is logged once per occurrence and skipped, never followed.
 */
#include "uvm.h"
#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

struct uvm_console {
	struct uvm_domain *dom;
	int fd;
	pthread_mutex_t lock;   /* several vCPUs may notify at once */
	uint64_t bad_producer;  /* times the guest's index was impossible */
};

int uvm_console_new(struct uvm_domain *dom, int fd, struct uvm_console **out)
{
	struct uvm_console *c = calloc(1, sizeof(*c));

	*out = NULL;
	if (c == NULL)
		return -ENOMEM;
	c->dom = dom;
	c->fd = fd;
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;
}

void uvm_console_free(struct uvm_console *c)
{
	if (c == NULL)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void uvm_console_emit(struct uvm_console *c, const char *buf, size_t len)
{
	while (c->fd >= 0 && len > 0) {
		ssize_t n = write(c->fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a closed terminal must not stop the guest */
		buf += n;
		len -= (size_t)n;
	}
}

void uvm_console_direct(struct uvm_console *c, const char *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	uvm_console_emit(c, buf, len);
	pthread_mutex_unlock(&c->lock);
}

void uvm_console_notify(struct uvm_console *c)
{
	struct uvm_console_ring *r = (struct uvm_console_ring *)(
		c->dom->arena + UVM_CONSOLE_PFN * UVM_PAGE_SIZE);
	uint32_t cons, prod;

	pthread_mutex_lock(&c->lock);
	cons = __atomic_load_n(&r->out_cons, __ATOMIC_RELAXED);
	prod = __atomic_load_n(&r->out_prod, __ATOMIC_ACQUIRE);
	if (prod - cons > sizeof(r->out)) {
		if (c->bad_producer++ == 0)
			log_warn("uvm: console: guest producer %u is more than "
				 "%zu bytes ahead of %u; skipping", prod,
				 sizeof(r->out), cons);
		cons = prod;
	}
	while (cons != prod) {
		uint32_t at = UVM_CONS_IDX(cons, r->out);
		uint32_t n = prod - cons;

		if (n > sizeof(r->out) - at)
			n = (uint32_t)sizeof(r->out) - at;
		uvm_console_emit(c, &r->out[at], n);
		cons += n;
	}
	__atomic_store_n(&r->out_cons, cons, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&c->lock);
}
