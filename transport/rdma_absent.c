/*
 * rdma_absent.c - tp_rdma_ops for builds without rdma-core's headers (the
 * Makefile picks this file instead of rdma.c and rdma_buf.c then).
 *
 * Connecting or listening fails at once with -EPROTONOSUPPORT and a
 * message saying how to get the real back end; no link or listener is
 * ever created, so the remaining ops are never reached and only refuse.
 * Call sites stay free of #ifdef: TP_KIND_RDMA always dispatches here.
 */
#include <errno.h>
#include <stdio.h>

#include "link_int.h"

#define RDMA_ABSENT_MSG "RDMA back end not built: rdma-core headers " \
	"(librdmacm-dev, libibverbs-dev) were absent at build time"

static int rdma_absent_refuse(char *err, size_t errlen)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", RDMA_ABSENT_MSG);
	return -EPROTONOSUPPORT;
}

static int rdma_absent_connect(struct tp_ctx *ctx, const struct tp_config *cfg,
			       const char *addr, struct tp_link **out,
			       char *err, size_t errlen)
{
	(void)ctx;
	(void)cfg;
	(void)addr;
	(void)out;
	return rdma_absent_refuse(err, errlen);
}

static int rdma_absent_listen(struct tp_ctx *ctx, const struct tp_config *cfg,
			      const char *addr, struct tp_listener **out,
			      char *err, size_t errlen)
{
	(void)ctx;
	(void)cfg;
	(void)addr;
	(void)out;
	return rdma_absent_refuse(err, errlen);
}

static int rdma_absent_send(struct tp_link *link, unsigned chan,
			    const uint8_t hdr[WIRE_RECORD_HEADER_SIZE],
			    const void *body, size_t len, size_t pad)
{
	(void)link;
	(void)chan;
	(void)hdr;
	(void)body;
	(void)len;
	(void)pad;
	return -EPROTONOSUPPORT;
}

static size_t rdma_absent_send_queued(struct tp_link *link, unsigned chan)
{
	(void)link;
	(void)chan;
	return 0;
}

static void rdma_absent_resume_read(struct tp_link *link, unsigned chan)
{
	(void)link;
	(void)chan;
}

static void rdma_absent_link_op(struct tp_link *link)
{
	(void)link;
}

static void rdma_absent_listener_free(struct tp_listener *l)
{
	(void)l;
}

const struct tp_backend_ops tp_rdma_ops = {
	.name = "rdma (not built)",
	.connect = rdma_absent_connect,
	.listen = rdma_absent_listen,
	.send = rdma_absent_send,
	.send_queued = rdma_absent_send_queued,
	.resume_read = rdma_absent_resume_read,
	.close = rdma_absent_link_op,
	.free = rdma_absent_link_op,
	.listener_free = rdma_absent_listener_free,
};
