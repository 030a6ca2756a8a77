/*
 * xen_promote.c - the standby resumes a Xen guest: the replica's last
 * committed checkpoint becomes an xl save image (xen_image.c) and Xen's
 * own restore path (`xl restore -p -e`) builds the domain from it, with
 * its backends, xenstore entries and console.  The guest wakes in its
 * suspend hypercall with 0 ("not cancelled") and reconnects its frontends
 * to this host's backends.  docs/hv.md says why tandem does not build the
 * domain itself.
 *
 * The image goes to a file in $TANDEM_XEN_SPOOL (default /var/lib/tandem,
 * else /var/tmp), mode 0600 - it is the guest's memory - and is removed
 * once the restore is done, whatever its outcome.
 */
#include "xen_int.h"
#include "xen_image.h"
#include "xen_state.h"
#include "log.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XEN_XLCFG_MAX (64 << 10)
#define XEN_NAME_WAIT_S 30u

static int xen_read_file(const char *path, char *buf, size_t len,
			 size_t *got)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len);
	close(fd);
	if (n < 0)
		return -errno;
	if ((size_t)n == len)
		return -EFBIG;
	*got = (size_t)n;
	return 0;
}

static const void *xen_replica_page(void *arg, uint64_t pfn)
{
	struct xen_dom *x = arg;

	return x->mem + pfn * HV_PAGE_SIZE;
}

static void xen_restore_progress(void *arg, uint64_t done, uint64_t total)
{
	struct xen_dom *x = arg;

	if (done == total || done % 16384 == 0)
		log_info("xen: %s: checkpoint image %" PRIu64 " of %" PRIu64
			 " pages", x->name, done, total);
}

static int xen_spool(char *path, size_t len, const char *name)
{
	const char *dirs[] = { getenv("TANDEM_XEN_SPOOL"), "/var/lib/tandem",
			       "/var/tmp" };

	for (unsigned i = 0; i < 3; i++) {
		struct stat sb;
		int fd;

		if (dirs[i] == NULL || stat(dirs[i], &sb) != 0 ||
		    !S_ISDIR(sb.st_mode))
			continue;
		snprintf(path, len, "%s/tandem-%s-XXXXXX", dirs[i], name);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	log_error("xen: %s: no spool directory for the checkpoint image "
		  "(TANDEM_XEN_SPOOL, /var/lib/tandem, /var/tmp)", name);
	return -ENOENT;
}

/* The image's state records, from the replica's committed blobs. */
static int xen_image_source(struct xen_dom *x, struct xen_image_src *src,
			    char *cfgtext, size_t cfglen)
{
	const struct hv_device_state *plat = &x->dev[XEN_DEV_PLATFORM];
	const struct xen_platform_blob *pb = (const void *)plat->blob;
	const struct hv_device_state *par = &x->dev[XEN_DEV_HVM_PARAMS];
	size_t got = 0;
	int ver, rc;

	for (unsigned i = 0; i < XEN_NR_DEVS; i++)
		if (!x->dev_set[i])
			return -ENODATA;
	rc = xen_read_file(x->xl_config, cfgtext, cfglen, &got);
	if (rc != 0) {
		log_error("xen: %s: xl config \"%s\": %s", x->name,
			  x->xl_config, strerror(-rc));
		return rc;
	}
	ver = xc_version(x->xch, XENVER_version, NULL);
	*src = (struct xen_image_src){
		.xl_config = cfgtext, .xl_config_len = got,
		.xen_major = (uint32_t)ver >> 16,
		.xen_minor = (uint32_t)ver & 0xffff,
		.cpuid = pb->data,
		.cpuid_len = pb->nr_leaves * sizeof(xen_cpuid_leaf_t),
		.msrs = pb->data + pb->nr_leaves * sizeof(xen_cpuid_leaf_t),
		.msrs_len = pb->nr_msrs * sizeof(xen_msr_entry_t),
		.tsc = { .mode = pb->tsc_mode, .khz = pb->tsc_khz,
			 .nsec = pb->tsc_nsec,
			 .incarnation = pb->tsc_incarnation },
		.hvm_context = x->dev[XEN_DEV_HVM_CONTEXT].blob,
		.hvm_context_len = x->dev[XEN_DEV_HVM_CONTEXT].len,
		.params = (const struct xen_image_param *)par->blob,
		.nr_params = par->len / sizeof(struct xen_image_param),
		.nr_pfns = x->nr_pages,
		.present = x->present,
		.page = xen_replica_page,
		.arg = x,
		.progress = xen_restore_progress,
	};
	return 0;
}

static int xen_write_image(struct xen_dom *x, int fd)
{
	char *cfg = malloc(XEN_XLCFG_MAX), err[256];
	struct xen_image_src src;
	int rc = cfg ? xen_image_source(x, &src, cfg, XEN_XLCFG_MAX) : -ENOMEM;

	if (rc == 0)
		rc = xen_image_write(fd, &src, err, sizeof(err));
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (rc != 0)
		log_error("xen: %s: checkpoint image: %s", x->name,
			  rc == -ENODATA ? "no committed state" : err);
	free(cfg);
	return rc;
}

/* A planned switchover on one host: the old copy still holds the name
 * until its owner destroys it.  Wait for that; never touch it. */
static int xen_wait_name_free(struct xen_dom *x)
{
	uint64_t deadline = mono_ns() + XEN_NAME_WAIT_S * 1000000000ULL;
	uint32_t old;
	bool said = false;

	while (xen_find_by_name(x->xsh, x->name, &old) == 0) {
		if (mono_ns() > deadline) {
			log_error("xen: %s: domain %" PRIu32 " still runs under "
				  "this name after %u s: not restoring a second "
				  "copy", x->name, old, XEN_NAME_WAIT_S);
			return -EEXIST;
		}
		if (!said)
			log_info("xen: %s: waiting for domain %" PRIu32 " (the "
				 "old copy) to go", x->name, old);
		said = true;
		usleep(100000);
	}
	return 0;
}

static int xen_restore(struct xen_dom *x, const char *image)
{
	char *argv[] = { "xl", "restore", "-p", "-e", x->xl_config,
			 (char *)image, NULL };
	char out[4096];

	return xen_run(argv, out, sizeof(out));
}

/* The replica turns into the restored domain: its memory is let go, the
 * domain's is mapped. */
static int xen_become_live(struct xen_dom *x)
{
	uint32_t domid = 0;
	int rc = xen_find_by_name(x->xsh, x->name, &domid);

	if (rc != 0) {
		log_error("xen: %s: restored, but no domain of that name", x->name);
		return rc;
	}
	xen_adopt(x, domid);
	xen_mem_free(x);
	return xen_attach(x, domid);
}

int xen_promote(struct xen_dom *x)
{
	char image[4096];
	uint64_t t0 = mono_ns(), t1, t2;
	int fd, rc;

	rc = xen_context_apply_vcpus(x);
	if (rc != 0)
		return rc;
	rc = xen_open_handles(x);
	if (rc != 0) {
		log_error("xen: %s: cannot resume the replica: no Xen here",
			  x->name);
		return rc;
	}
	fd = xen_spool(image, sizeof(image), x->name);
	if (fd < 0)
		return fd;
	rc = xen_write_image(x, fd);
	close(fd);
	t1 = mono_ns();
	if (rc == 0)
		rc = xen_wait_name_free(x);
	if (rc == 0) {
		log_info("xen: %s: checkpoint image of %" PRIu64 " pages written "
			 "in %.2f s; xl restore", x->name, x->nr_present,
			 (t1 - t0) / 1e9);
		rc = xen_restore(x, image);
	}
	unlink(image);
	t2 = mono_ns();
	if (rc == 0)
		rc = xen_become_live(x);
	/* It was checkpointed in its suspend path: its drivers are up (a
	 * restored Linux does not announce feature-suspend again). */
	x->suspendable = rc == 0;
	if (rc == 0 && x->state == XS_PAUSED) {
		if (xc_domain_unpause(x->xch, x->domid) != 0)
			rc = -errno;
		else
			xen_set_state(x, XS_RUNNING, "restored");
	}
	if (rc == 0)
		log_info("xen: %s: resumed as domain %" PRIu32 " (image %.2f s, "
			 "xl restore %.2f s)", x->name, x->domid,
			 (t1 - t0) / 1e9, (t2 - t1) / 1e9);
	return rc;
}
