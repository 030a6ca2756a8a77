/*
 * dev.c - the domain's side of its device back ends: creating them,
 * routing notifications, quiescing them around pauses, and the output
 * gate.  The back ends themselves live in blk.c and stream.c (dev.h).
 *
 * Device table order: index 0 is the console (console.c, served from the
 * vCPU exit path); back ends follow in creation order, block before
 * stream.  Back ends are created quiesced and run from the first unpause.
 */
#include "uvm.h"
#include "dev.h"
#include "dirty.h"
#include "log.h"
#include "uvm_dev.h"

#include <errno.h>
#include <string.h>

static uint64_t dev_nr_pages(const struct uvm_domain *dom)
{
	return dom->arena_size / UVM_PAGE_SIZE;
}

void *uvm_dev_guest_ptr(struct uvm_dev *dev, uint64_t pfn, uint64_t count)
{
	uint64_t n = dev_nr_pages(dev->dom);

	if (count == 0 || pfn >= n || count > n - pfn)
		return NULL;
	return dev->dom->arena + pfn * UVM_PAGE_SIZE;
}

int uvm_dev_guest_write(struct uvm_dev *dev, uint64_t pfn, uint64_t count,
			void **ptr)
{
	int rc;

	*ptr = uvm_dev_guest_ptr(dev, pfn, count);
	if (*ptr == NULL)
		return -EFAULT;
	rc = uvm_dirty_host_write(dev->dom->dirty, pfn * UVM_PAGE_SIZE,
				  count * UVM_PAGE_SIZE);
	if (rc != 0)
		*ptr = NULL;
	return rc;
}

void uvm_dev_raise(struct uvm_dev *dev)
{
	uvm_evtchn_raise(dev->dom, dev->port);
}

/* ---- creation ---------------------------------------------------------- */

static int dev_add(struct uvm_domain *dom, struct uvm_dev *dev)
{
	if (dom->nr_devs >= UVM_MAX_BACKENDS) {
		dev->ops->free(dev);
		return -ENOSPC;
	}
	dom->devs[dom->nr_devs++] = dev;
	return 0;
}

/* Fill the device table for a fresh guest; a restore brings its own. */
static void dev_describe(struct uvm_domain *dom)
{
	struct uvm_shared_info *si = uvm_shared(dom);

	si->nr_devices = 1 + dom->nr_devs;
	for (unsigned i = 0; i < dom->nr_devs; i++) {
		struct uvm_device_desc *d = &si->devices[i + 1];

		d->type = dom->devs[i]->ops->type;
		d->port = dom->devs[i]->port;
	}
}

int uvm_devs_create(struct uvm_domain *dom, bool build)
{
	struct uvm_dev *dev;
	int rc = 0;

	if (dom->cfg.disk != NULL) {
		rc = uvm_blk_new(dom, dom->cfg.disk, build, &dev);
		if (rc == 0)
			rc = dev_add(dom, dev);
		if (rc == 0)
			dom->blk = dev;
	}
	if (rc == 0 && dom->cfg.listen != NULL) {
		rc = uvm_stream_new(dom, dom->cfg.listen, build, &dev);
		if (rc == 0)
			rc = dev_add(dom, dev);
	}
	if (rc == 0 && build)
		dev_describe(dom);
	return rc;
}

void uvm_devs_free(struct uvm_domain *dom)
{
	for (unsigned i = 0; i < dom->nr_devs; i++)
		dom->devs[i]->ops->free(dom->devs[i]);
	dom->nr_devs = 0;
}

void uvm_devs_notify(struct uvm_domain *dom, uint32_t port)
{
	for (unsigned i = 0; i < dom->nr_devs; i++)
		if (dom->devs[i]->port == port)
			dom->devs[i]->ops->notify(dom->devs[i]);
}

int uvm_devs_quiesce(struct uvm_domain *dom)
{
	int rc = 0;

	if (!dom->devs_running)
		return 0;
	for (unsigned i = 0; i < dom->nr_devs && rc == 0; i++)
		rc = dom->devs[i]->ops->quiesce(dom->devs[i]);
	if (rc != 0)
		log_error("uvm: quiescing the devices failed: %s", strerror(-rc));
	else
		dom->devs_running = false;
	return rc;
}

void uvm_devs_resume(struct uvm_domain *dom)
{
	if (dom->devs_running)
		return;
	for (unsigned i = 0; i < dom->nr_devs; i++)
		dom->devs[i]->ops->resume(dom->devs[i]);
	dom->devs_running = true;
}

/* ---- output gate ---------------------------------------------------------- */

void uvm_gate_init(struct uvm_domain *dom)
{
	atomic_init(&dom->gate_hold, false);
	atomic_init(&dom->gate_epoch, 1);
	atomic_init(&dom->gate_released, 0);
}

uint64_t uvm_gate_epoch(const struct uvm_dev *dev)
{
	struct uvm_domain *dom = dev->dom;

	/* Called exactly where a back end tags output it will hold. */
	if (atomic_load(&dom->gate_hold) && dom->gate_watch != NULL)
		dom->gate_watch(dom->gate_watch_arg);
	return atomic_load(&dom->gate_epoch);
}

uint64_t uvm_gate_released(const struct uvm_dev *dev)
{
	if (!atomic_load(&dev->dom->gate_hold))
		return UINT64_MAX;
	return atomic_load(&dev->dom->gate_released);
}

static void gate_tell(struct uvm_domain *dom, uint64_t epoch)
{
	for (unsigned i = 0; i < dom->nr_devs; i++)
		dom->devs[i]->ops->release(dom->devs[i], epoch);
}

int uvm_gate_set_hold(struct uvm_domain *dom, bool hold)
{
	if (hold) {
		/* Nothing produced from now on is out until released. */
		atomic_store(&dom->gate_released,
			     atomic_load(&dom->gate_epoch) - 1);
		atomic_store(&dom->gate_hold, true);
		log_info("uvm: output gate holding from epoch %llu",
			 (unsigned long long)atomic_load(&dom->gate_epoch));
		return 0;
	}
	atomic_store(&dom->gate_hold, false);
	gate_tell(dom, UINT64_MAX);
	log_info("uvm: output gate open");
	return 0;
}

uint64_t uvm_gate_advance(struct uvm_domain *dom)
{
	return atomic_fetch_add(&dom->gate_epoch, 1);
}

int uvm_gate_release(struct uvm_domain *dom, uint64_t epoch)
{
	uint64_t cur = atomic_load(&dom->gate_released);

	if (epoch >= atomic_load(&dom->gate_epoch)) {
		log_error("uvm: cannot release epoch %llu: it has not ended "
			  "(current epoch %llu)", (unsigned long long)epoch,
			  (unsigned long long)atomic_load(&dom->gate_epoch));
		return -EINVAL;
	}
	while (epoch > cur &&
	       !atomic_compare_exchange_weak(&dom->gate_released, &cur, epoch))
		;
	gate_tell(dom, epoch);
	return 0;
}
