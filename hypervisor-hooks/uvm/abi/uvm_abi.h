/*
 * uvm_abi.h - the contract between the uvm host and a uvm guest.
 *
 * Included by host code (hypervisor-hooks/uvm) and by freestanding guest
 * code (hypervisor-hooks/uvm/guest), so it uses nothing but <stdint.h>.
 *
 * Guest memory is one arena mapped at UVM_GUEST_BASE on every host; a guest
 * frame number (pfn) is (address - UVM_GUEST_BASE) / UVM_PAGE_SIZE.
 *
 *   pfn 0            shared-info page   (event channels, device table)
 *   pfn 1            start-info page    (arena size, vCPUs, cmdline, report)
 *   pfn 2            console ring
 *   pfn 3..255       reserved for device rings (later devices)
 *   1 MiB            guest image (ELF, linked at UVM_IMAGE_BASE)
 *   image end..      heap (start_info.heap_start_pfn .. heap_end_pfn)
 *   top of arena     one UVM_VCPU_STACK_SIZE stack per vCPU, vCPU 0 highest
 *
 * Hypercalls: the guest executes `ud2` with the call number in rax and
 * arguments in rdi, rsi, rdx; the result comes back in rax (negative errno
 * on failure) and execution continues after the ud2.  Every hypercall is an
 * event-channel boundary: a pending pause takes effect there, before the
 * call is carried out, so a restored guest re-executes it.
 *
 * Entry: every vCPU starts at the ELF entry point with rdi = start-info
 * address, rsi = vCPU id, rsp = top of its stack (16-byte aligned).
 */
#ifndef UVM_ABI_H
#define UVM_ABI_H

#include <stdint.h>

#define UVM_GUEST_BASE      0x500000000000ULL /* clear of ASan's shadow and heap */
#define UVM_PAGE_SHIFT      12
#define UVM_PAGE_SIZE       (1ULL << UVM_PAGE_SHIFT)
#define UVM_IMAGE_OFFSET    0x100000ULL
#define UVM_IMAGE_BASE      (UVM_GUEST_BASE + UVM_IMAGE_OFFSET)
#define UVM_VCPU_STACK_SIZE 0x40000ULL
#define UVM_MAX_VCPUS       8

#define UVM_SHARED_INFO_PFN 0
#define UVM_START_INFO_PFN  1
#define UVM_CONSOLE_PFN     2
#define UVM_RESERVED_PFNS   256 /* pfns below this belong to the platform */

#define UVM_ADDR(pfn) (UVM_GUEST_BASE + ((uint64_t)(pfn) << UVM_PAGE_SHIFT))

/* Hypercall numbers (rax). */
enum uvm_hypercall {
	UVM_HC_CONSOLE_WRITE = 1, /* rdi = buf, rsi = len -> bytes written   */
	UVM_HC_EVTCHN_NOTIFY = 2, /* rdi = port -> 0                         */
	UVM_HC_BLOCK = 3,         /* sleep until an unmasked event bound to
	                             this vCPU is pending */
	UVM_HC_YIELD = 4,         /* give up the CPU once -> 0               */
	UVM_HC_SET_TIMER = 5,     /* rdi = deadline in guest ns, 0 = cancel;
	                             this vCPU's timer, UVM_PORT_TIMER(vcpu) */
	UVM_HC_CLOCK = 6,         /* -> guest monotonic time in ns           */
	UVM_HC_SHUTDOWN = 7,      /* rdi = enum uvm_shutdown_reason, rsi = code */
	UVM_HC_MAX
};

enum uvm_shutdown_reason {
	UVM_SHUTDOWN_POWEROFF = 0,
	UVM_SHUTDOWN_CRASH = 1,
};

/* Well-known event-channel ports. */
#define UVM_NR_EVTCHN     256
/* Each vCPU's timer raises its own port when its deadline passes. */
#define UVM_PORT_TIMER_BASE 16
#define UVM_PORT_TIMER(vcpu) (UVM_PORT_TIMER_BASE + (vcpu))
#define UVM_PORT_CONSOLE  2 /* console ring: guest -> host notify     */
#define UVM_PORT_FIRST_DEVICE 8

/* Device table entry in the shared-info page. */
enum uvm_device_type {
	UVM_DEV_NONE = 0,
	UVM_DEV_CONSOLE = 1,
};

struct uvm_device_desc {
	uint32_t type;      /* enum uvm_device_type, or UVM_DEV_* of uvm_dev.h */
	uint32_t port;      /* event channel of this device */
	uint64_t ring_pfn;  /* first page of the shared ring(s) */
	uint32_t ring_pages;
	uint32_t flags;
	uint64_t config[2]; /* per type, see uvm_dev.h */
};

#define UVM_MAX_DEVICES 16

struct uvm_shared_info {
	uint64_t evtchn_pending[UVM_NR_EVTCHN / 64];
	uint64_t evtchn_mask[UVM_NR_EVTCHN / 64];
	/* The vCPU whose UVM_HC_BLOCK a port wakes (Xen's bind_vcpu): 0 by
	 * default, UVM_PORT_TIMER(v) bound to v; the guest may rebind. */
	uint8_t evtchn_vcpu[UVM_NR_EVTCHN];
	uint32_t nr_devices;
	uint32_t pad0;
	struct uvm_device_desc devices[UVM_MAX_DEVICES];
};

#define UVM_START_MAGIC 0x74616e64656d7631ULL /* "tandemv1" */
#define UVM_CMDLINE_MAX 256
#define UVM_REPORT_WORDS 16

/*
 * The start-info page.  The host fills everything up to `report`; the
 * guest may write `report`, which host tools read (the pagetest checker
 * finds its region there).
 */
struct uvm_start_info {
	uint64_t magic;
	uint64_t arena_size;      /* bytes */
	uint32_t nr_vcpus;
	uint32_t console_port;
	uint64_t console_pfn;
	uint64_t heap_start_pfn;  /* first free page after the image */
	uint64_t heap_end_pfn;    /* first page of the vCPU stacks */
	char cmdline[UVM_CMDLINE_MAX];
	uint64_t report[UVM_REPORT_WORDS];
};

/* Guest report words used by the bundled guests. */
enum uvm_report_word {
	UVM_REPORT_KIND = 0,       /* which guest: UVM_GUEST_* */
	UVM_REPORT_REGION_PFN = 1, /* first pfn of the region it writes */
	UVM_REPORT_REGION_PAGES = 2,
	UVM_REPORT_PASSES = 3,     /* completed passes / iterations */
	UVM_REPORT_WRITES = 4,     /* total page writes */
	UVM_REPORT_CHECKS = 5,     /* successful self-checks (vecguest) */
	UVM_REPORT_ERRORS = 6,     /* failed self-checks */
};

#define UVM_GUEST_PAGETEST  0x70616765ULL /* "page" */
#define UVM_GUEST_MEMSTRESS 0x6d656d73ULL /* "mems" */
#define UVM_GUEST_VECGUEST  0x76656374ULL /* "vect" */

/* Console ring (Xen's xencons_interface layout). */
struct uvm_console_ring {
	char in[1024];
	char out[2048];
	uint32_t in_cons, in_prod;
	uint32_t out_cons, out_prod;
};

#define UVM_CONS_IDX(idx, ring) ((idx) & (sizeof(ring) - 1))

#endif
