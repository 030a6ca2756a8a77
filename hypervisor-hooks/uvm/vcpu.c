/*
 * vcpu.c - running guest code natively on vCPU threads.
 *
 * A vCPU thread sets up its alternate signal stack and executes `ud2` at
 * uvm_host_enter_ud2.  The trap handler saves that host context, parks
 * until the domain is unpaused, writes the guest's registers and XSAVE area
 * into the signal frame and returns: the kernel's sigreturn loads the guest.
 * From then on every exit is a signal taken on the alternate stack:
 *
 *   SIGILL on ud2 in guest memory  hypercall (number in rax)
 *   UVM_SIG_KICK                   preemption, for a pause the guest did
 *                                  not reach by itself within the bound
 *   SIGSEGV/SIGBUS/SIGFPE/SIGTRAP  guest crash (tracking faults are
 *                                  resolved earlier, in dirty.c)
 *
 * The handler is the exit path: it runs only over guest code (never over
 * host code holding a lock) and masks UVM_SIG_KICK, so it may lock, wait
 * and log.  To leave the guest for good it puts the saved host context
 * back into the frame, and the thread continues after its `ud2`.
 *
 * A pause request is honoured at the next hypercall, before the call runs
 * (the guest re-executes it after unpause, on this host or another), or by
 * the kick after cfg.pause_bound_us.  While parked, the frame on the
 * alternate stack is the vCPU state that save and load read and write.
 */
#include "uvm.h"
#include "dirty.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define UVM_SIG_KICK SIGUSR2
#define UVM_ALTSTACK_SIZE (1UL << 20)
#define UVM_PAUSE_GIVE_UP_NS (5ULL * 1000000000ULL)
#define UVM_KICK_RETRY_NS (10ULL * 1000000ULL)
#define UVM_CONSOLE_WRITE_MAX 4096
#define UVM_RFLAGS_USER 0x00250fd5ULL /* CF PF AF ZF SF TF IF DF OF AC ID */
#define UVM_RFLAGS_FIXED 0x2ULL

extern const char uvm_host_enter_ud2[];

/* volatile: the store before the entry trap is read only by the handler,
 * which the compiler cannot see. */
static __thread struct uvm_vcpu *volatile uvm_cur;
static struct sigaction uvm_old_actions[NSIG];

enum uvm_hc_result { UVM_HC_DONE, UVM_HC_RETRY };

static void uvm_install_handlers(void);

static const char *const uvm_vcpu_state_names[UVM_VCPU_NR_STATES] = {
	[UVM_VCPU_NEW] = "new",
	[UVM_VCPU_PARKED] = "parked",
	[UVM_VCPU_RUNNING] = "running",
	[UVM_VCPU_STOPPED] = "stopped",
};

const char *uvm_vcpu_state_name(enum uvm_vcpu_state s)
{
	return s < UVM_VCPU_NR_STATES ? uvm_vcpu_state_names[s] : "?";
}

uint64_t uvm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t uvm_guest_clock(const struct uvm_domain *dom)
{
	return (uint64_t)((int64_t)uvm_now_ns() + dom->clock_offset_ns);
}

struct timespec uvm_abs_time(uint64_t ns)
{
	struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000ULL),
			       .tv_nsec = (long)(ns % 1000000000ULL) };

	return ts;
}

/* The only writer of v->state; called with dom->lock held. */
static void uvm_vcpu_set_state(struct uvm_vcpu *v, enum uvm_vcpu_state s)
{
	if (v->state == s)
		return;
	log_debug("uvm: vcpu %u: %s -> %s", v->id,
		  uvm_vcpu_state_name(v->state), uvm_vcpu_state_name(s));
	v->state = s;
}

static bool uvm_in_guest(const struct uvm_domain *dom, uint64_t addr)
{
	return addr - UVM_GUEST_BASE < dom->arena_size;
}

static bool uvm_range_in_guest(const struct uvm_domain *dom, uint64_t addr,
			       uint64_t len)
{
	return uvm_in_guest(dom, addr) &&
	       len <= UVM_GUEST_BASE + dom->arena_size - addr;
}

/* ---- events ----------------------------------------------------------- */

static void uvm_set_pending(struct uvm_domain *dom, uint32_t port)
{
	__atomic_fetch_or(&uvm_shared(dom)->evtchn_pending[port / 64],
			  1ULL << (port % 64), __ATOMIC_SEQ_CST);
}

/* The vCPU a port wakes; a binding to no such vCPU means vCPU 0. */
static unsigned uvm_port_vcpu(struct uvm_domain *dom, unsigned port)
{
	unsigned v = __atomic_load_n(&uvm_shared(dom)->evtchn_vcpu[port],
				     __ATOMIC_RELAXED);

	return v < dom->nr_vcpus ? v : 0;
}

/* Is an unmasked event bound to vCPU v pending? */
static bool uvm_event_deliverable(struct uvm_vcpu *v)
{
	struct uvm_shared_info *si = uvm_shared(v->dom);

	for (unsigned i = 0; i < UVM_NR_EVTCHN / 64; i++) {
		uint64_t ready = __atomic_load_n(&si->evtchn_pending[i],
						 __ATOMIC_ACQUIRE) &
				 ~__atomic_load_n(&si->evtchn_mask[i],
						  __ATOMIC_ACQUIRE);

		while (ready != 0) {
			unsigned bit = (unsigned)__builtin_ctzll(ready);

			if (uvm_port_vcpu(v->dom, i * 64 + bit) == v->id)
				return true;
			ready &= ready - 1;
		}
	}
	return false;
}

void uvm_evtchn_raise(struct uvm_domain *dom, uint32_t port)
{
	uvm_set_pending(dom, port);
	pthread_mutex_lock(&dom->lock);
	pthread_cond_broadcast(&dom->vcpu_cond);
	pthread_mutex_unlock(&dom->lock);
}

/* Fire the timer if its deadline passed; dom->lock held or not needed. */
static bool uvm_timer_check(struct uvm_vcpu *v)
{
	if (v->timer_deadline_ns == 0 ||
	    uvm_guest_clock(v->dom) < v->timer_deadline_ns)
		return false;
	v->timer_deadline_ns = 0;
	uvm_set_pending(v->dom, UVM_PORT_TIMER(v->id));
	return true;
}

/* ---- parking and leaving ---------------------------------------------- */

static void uvm_park(struct uvm_vcpu *v, ucontext_t *uc,
		     enum uvm_park_reason reason)
{
	struct uvm_domain *dom = v->dom;

	pthread_mutex_lock(&dom->lock);
	v->frame = uc;
	v->park_reason = reason;
	uvm_vcpu_set_state(v, UVM_VCPU_PARKED);
	pthread_cond_broadcast(&dom->ctl_cond);
	while (atomic_load(&dom->pause_req) && !v->stop)
		pthread_cond_wait(&dom->vcpu_cond, &dom->lock);
	if (!v->stop)
		uvm_vcpu_set_state(v, UVM_VCPU_RUNNING);
	pthread_mutex_unlock(&dom->lock);
}

static void uvm_mark_stopped(struct uvm_vcpu *v)
{
	struct uvm_domain *dom = v->dom;

	pthread_mutex_lock(&dom->lock);
	uvm_vcpu_set_state(v, UVM_VCPU_STOPPED);
	dom->nr_stopped++;
	pthread_cond_broadcast(&dom->ctl_cond);
	pthread_mutex_unlock(&dom->lock);
}

/* Put the host context of the entry trap back: the thread resumes after
 * its `ud2` in uvm_host_enter once the handler returns. */
static void uvm_leave(struct uvm_vcpu *v, ucontext_t *uc)
{
	memcpy(uc->uc_mcontext.gregs, v->host_gregs, sizeof(v->host_gregs));
	uc->uc_mcontext.gregs[REG_RIP] += 2;
	memcpy(uc->uc_mcontext.fpregs, v->host_fpstate, v->host_fpstate_len);
	uvm_mark_stopped(v);
}

void uvm_stop_all(struct uvm_domain *dom, enum hv_shutdown_reason reason,
		  int64_t code, const char *detail)
{
	pthread_t self = pthread_self();

	/* The vCPUs must reach our handlers to leave: if something replaced
	 * them since they started, take them back first. */
	uvm_install_handlers();
	pthread_mutex_lock(&dom->lock);
	if (dom->shutdown.reason == HV_SHUTDOWN_NONE) {
		dom->shutdown.reason = reason;
		dom->shutdown.code = code;
		snprintf(dom->shutdown.detail, sizeof(dom->shutdown.detail),
			 "%s", detail);
		if (reason == HV_SHUTDOWN_CRASH)
			log_error("uvm: %s", detail);
		else if (reason == HV_SHUTDOWN_DESTROYED)
			log_debug("uvm: %s", detail);
		else
			log_info("uvm: %s", detail);
	}
	for (unsigned i = 0; i < dom->nr_vcpus; i++) {
		struct uvm_vcpu *v = &dom->vcpus[i];

		v->stop = true;
		if (v->state == UVM_VCPU_RUNNING && v->thread_started &&
		    !pthread_equal(v->thread, self))
			pthread_kill(v->thread, UVM_SIG_KICK);
	}
	pthread_cond_broadcast(&dom->vcpu_cond);
	pthread_cond_broadcast(&dom->ctl_cond);
	pthread_mutex_unlock(&dom->lock);
}

/* ---- hypercalls ------------------------------------------------------- */

static int64_t uvm_hc_console(struct uvm_vcpu *v, uint64_t buf, uint64_t len)
{
	struct uvm_domain *dom = v->dom;

	if (len > UVM_CONSOLE_WRITE_MAX || !uvm_range_in_guest(dom, buf, len))
		return -EFAULT;
	uvm_console_direct(dom->console, (const char *)(uintptr_t)buf,
			   (size_t)len);
	return (int64_t)len;
}

static int64_t uvm_hc_notify(struct uvm_vcpu *v, uint64_t port)
{
	struct uvm_domain *dom = v->dom;

	if (port >= UVM_NR_EVTCHN)
		return -EINVAL;
	if (port == UVM_PORT_CONSOLE)
		uvm_console_notify(dom->console);
	else
		uvm_devs_notify(dom, (uint32_t)port);
	if (dom->hook != NULL)
		dom->hook(dom->hook_arg, v->id, (uint32_t)port);
	return 0;
}

static enum uvm_hc_result uvm_hc_block(struct uvm_vcpu *v)
{
	struct uvm_domain *dom = v->dom;
	enum uvm_hc_result r = UVM_HC_DONE;

	pthread_mutex_lock(&dom->lock);
	while (!uvm_event_deliverable(v) && !uvm_timer_check(v)) {
		if (atomic_load(&dom->pause_req) || v->stop) {
			r = UVM_HC_RETRY;
			break;
		}
		if (v->timer_deadline_ns != 0) {
			int64_t wait = (int64_t)(v->timer_deadline_ns -
						 uvm_guest_clock(dom));
			struct timespec ts = uvm_abs_time(
				uvm_now_ns() + (uint64_t)(wait > 0 ? wait : 0));

			pthread_cond_timedwait(&dom->vcpu_cond, &dom->lock, &ts);
		} else {
			pthread_cond_wait(&dom->vcpu_cond, &dom->lock);
		}
	}
	pthread_mutex_unlock(&dom->lock);
	return r;
}

static enum uvm_hc_result uvm_hc_dispatch(struct uvm_vcpu *v, greg_t *g,
					  int64_t *ret)
{
	uint64_t a0 = (uint64_t)g[REG_RDI], a1 = (uint64_t)g[REG_RSI];
	char detail[160];

	*ret = 0;
	switch ((uint64_t)g[REG_RAX]) {
	case UVM_HC_CONSOLE_WRITE:
		*ret = uvm_hc_console(v, a0, a1);
		break;
	case UVM_HC_EVTCHN_NOTIFY:
		*ret = uvm_hc_notify(v, a0);
		break;
	case UVM_HC_BLOCK:
		return uvm_hc_block(v);
	case UVM_HC_YIELD:
		sched_yield();
		break;
	case UVM_HC_SET_TIMER:
		v->timer_deadline_ns = a0;
		(void)uvm_timer_check(v);
		break;
	case UVM_HC_CLOCK:
		*ret = (int64_t)uvm_guest_clock(v->dom);
		break;
	case UVM_HC_SHUTDOWN:
		snprintf(detail, sizeof(detail), "guest %s (code %" PRId64 ")",
			 a0 == UVM_SHUTDOWN_CRASH ? "reported a crash"
						  : "powered off",
			 (int64_t)a1);
		uvm_stop_all(v->dom, a0 == UVM_SHUTDOWN_CRASH
					     ? HV_SHUTDOWN_CRASH
					     : HV_SHUTDOWN_POWEROFF,
			     (int64_t)a1, detail);
		break;
	default:
		*ret = -ENOSYS;
		break;
	}
	return UVM_HC_DONE;
}

static void uvm_hypercall(struct uvm_vcpu *v, ucontext_t *uc)
{
	greg_t *g = uc->uc_mcontext.gregs;
	int64_t ret;

	__atomic_fetch_add(&v->hypercalls, 1, __ATOMIC_RELAXED);
	if (atomic_load(&v->dom->pause_req)) {
		uvm_park(v, uc, UVM_PARK_BOUNDARY);
		return; /* the guest re-executes the ud2 */
	}
	(void)uvm_timer_check(v);
	if (uvm_hc_dispatch(v, g, &ret) == UVM_HC_RETRY) {
		if (atomic_load(&v->dom->pause_req) && !v->stop)
			uvm_park(v, uc, UVM_PARK_BOUNDARY);
		return;
	}
	g[REG_RAX] = (greg_t)ret;
	g[REG_RIP] += 2;
}

static void uvm_crash(struct uvm_vcpu *v, ucontext_t *uc, int sig,
		      siginfo_t *si)
{
	char detail[160];

	snprintf(detail, sizeof(detail),
		 "guest crashed: vcpu %u: %s at rip 0x%llx, address %p", v->id,
		 strsignal(sig), (unsigned long long)uc->uc_mcontext.gregs[REG_RIP],
		 si->si_addr);
	uvm_stop_all(v->dom, HV_SHUTDOWN_CRASH, sig, detail);
}

static bool uvm_is_ud2(const struct uvm_domain *dom, uint64_t rip)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)rip;

	return uvm_range_in_guest(dom, rip, 2) && p[0] == 0x0f && p[1] == 0x0b;
}

/* ---- signal entry ----------------------------------------------------- */

static void uvm_first_entry(struct uvm_vcpu *v, ucontext_t *uc)
{
	struct uvm_domain *dom = v->dom;
	uint32_t len = 0;

	memcpy(v->host_gregs, uc->uc_mcontext.gregs, sizeof(v->host_gregs));
	if (uvm_xsave_frame_len(uc, &len) != 0)
		len = HV_XSAVE_MAX;
	v->host_fpstate_len = len;
	memcpy(v->host_fpstate, uc->uc_mcontext.fpregs, len);
	if (v->id == 0) {
		struct hv_vcpu_state *probe = v->scratch;

		uvm_xsave_from_frame(uc, probe);
		dom->xsave.features = probe->xfeatures;
		dom->xsave.size = probe->xsave_len;
	}
	uvm_park(v, uc, UVM_PARK_START);
}

/* A fault or trap that is not ours: hand it to whoever had it before. */
static void uvm_host_signal(int sig, siginfo_t *si, void *ucv)
{
	struct sigaction *old = &uvm_old_actions[sig];

	if (sig == UVM_SIG_KICK)
		return; /* a kick that found the vCPU in host code */
	if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction != NULL) {
		old->sa_sigaction(sig, si, ucv);
		return;
	}
	if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN &&
	    old->sa_handler != NULL) {
		old->sa_handler(sig);
		return;
	}
	log_error("uvm: %s in host code at rip 0x%llx (thread %s a vCPU)",
		  strsignal(sig),
		  (unsigned long long)((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP],
		  uvm_cur != NULL ? "of" : "not");
	signal(sig, SIG_DFL); /* returning re-raises it with the default action */
}

static void uvm_on_signal(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	struct uvm_vcpu *v = uvm_cur;
	uint64_t rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];

	if (v == NULL || !uvm_in_guest(v->dom, rip)) {
		if (v != NULL && sig == SIGILL &&
		    rip == (uint64_t)(uintptr_t)uvm_host_enter_ud2)
			uvm_first_entry(v, uc);
		else
			uvm_host_signal(sig, si, ucv);
		if (v != NULL && v->stop && v->state != UVM_VCPU_STOPPED &&
		    rip == (uint64_t)(uintptr_t)uvm_host_enter_ud2)
			uvm_leave(v, uc);
		return;
	}
	if (sig == SIGILL && uvm_is_ud2(v->dom, rip))
		uvm_hypercall(v, uc);
	else if (sig == UVM_SIG_KICK) {
		if (atomic_load(&v->dom->pause_req) && !v->stop) {
			__atomic_fetch_add(&v->preemptions, 1, __ATOMIC_RELAXED);
			uvm_park(v, uc, UVM_PARK_PREEMPTED);
		}
	} else
		uvm_crash(v, uc, sig, si);
	if (v->stop)
		uvm_leave(v, uc);
}

/* (Re)install our handlers where someone else's stand (a library or a test
 * framework may replace them); theirs become the chained ones. */
static void uvm_install_handlers(void)
{
	static const int sigs[] = { SIGILL, SIGBUS, SIGFPE, SIGTRAP,
				    UVM_SIG_KICK };
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	struct sigaction sa, cur;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = uvm_on_signal;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, UVM_SIG_KICK);
	pthread_mutex_lock(&lock);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaction(sigs[i], NULL, &cur);
		if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == uvm_on_signal)
			continue;
		sigaction(sigs[i], &sa, &uvm_old_actions[sigs[i]]);
	}
	pthread_mutex_unlock(&lock);
	uvm_dirty_install_handler(uvm_on_signal);
}

/* ---- threads ---------------------------------------------------------- */

__attribute__((noinline)) static void uvm_host_enter(void)
{
	__asm__ volatile(".globl uvm_host_enter_ud2\n"
			 "uvm_host_enter_ud2:\n\t"
			 "ud2\n" ::: "memory");
}

static void uvm_vcpu_sigmask(void)
{
	sigset_t set;

	sigfillset(&set);
	sigdelset(&set, SIGILL);
	sigdelset(&set, SIGSEGV);
	sigdelset(&set, SIGBUS);
	sigdelset(&set, SIGFPE);
	sigdelset(&set, SIGTRAP);
	sigdelset(&set, UVM_SIG_KICK);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
}

static void *uvm_vcpu_thread(void *arg)
{
	struct uvm_vcpu *v = arg;
	stack_t ss = { .ss_sp = v->altstack, .ss_size = v->altstack_size };
	char name[16];

	snprintf(name, sizeof(name), "uvm-vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	if (sigaltstack(&ss, NULL) != 0) {
		log_error("uvm: vcpu %u: sigaltstack: %s", v->id, strerror(errno));
		uvm_stop_all(v->dom, HV_SHUTDOWN_CRASH, 0, "vcpu has no signal stack");
		uvm_mark_stopped(v);
		return NULL;
	}
	uvm_vcpu_sigmask();
	uvm_cur = v;
	uvm_host_enter();
	uvm_cur = NULL;
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);
	return NULL;
}

int uvm_vcpu_start(struct uvm_vcpu *v)
{
	int rc;

	uvm_install_handlers();
	v->altstack_size = UVM_ALTSTACK_SIZE;
	v->altstack = mmap(NULL, v->altstack_size, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	v->host_fpstate = malloc(HV_XSAVE_MAX);
	v->scratch = malloc(sizeof(*v->scratch));
	if (v->altstack == MAP_FAILED || v->host_fpstate == NULL ||
	    v->scratch == NULL) {
		if (v->altstack == MAP_FAILED)
			v->altstack = NULL;
		return -ENOMEM;
	}
	rc = -pthread_create(&v->thread, NULL, uvm_vcpu_thread, v);
	if (rc == 0)
		v->thread_started = true;
	return rc;
}

void uvm_vcpu_join(struct uvm_vcpu *v)
{
	if (v->thread_started)
		pthread_join(v->thread, NULL);
	v->thread_started = false;
	if (v->altstack != NULL)
		munmap(v->altstack, v->altstack_size);
	v->altstack = NULL;
	free(v->host_fpstate);
	free(v->scratch);
	v->host_fpstate = NULL;
	v->scratch = NULL;
}

/* ---- pause / unpause -------------------------------------------------- */

static unsigned uvm_count_state(const struct uvm_domain *dom,
				enum uvm_vcpu_state s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < dom->nr_vcpus; i++)
		n += dom->vcpus[i].state == s;
	return n;
}

static bool uvm_all_parked(const struct uvm_domain *dom)
{
	return uvm_count_state(dom, UVM_VCPU_PARKED) +
		       uvm_count_state(dom, UVM_VCPU_STOPPED) ==
	       dom->nr_vcpus;
}

static void uvm_kick_running(struct uvm_domain *dom)
{
	for (unsigned i = 0; i < dom->nr_vcpus; i++)
		if (dom->vcpus[i].state == UVM_VCPU_RUNNING)
			pthread_kill(dom->vcpus[i].thread, UVM_SIG_KICK);
}

/* Wait (lock held) until every vCPU is parked, kicking after the bound. */
static int uvm_wait_parked(struct uvm_domain *dom, uint64_t t0)
{
	uint64_t bound = (uint64_t)dom->cfg.pause_bound_us * 1000ULL;
	uint64_t next_kick = t0 + bound;

	while (!uvm_all_parked(dom)) {
		uint64_t now = uvm_now_ns();
		struct timespec ts;

		if (now - t0 > UVM_PAUSE_GIVE_UP_NS)
			return -ETIMEDOUT;
		if (now >= next_kick) {
			uvm_kick_running(dom);
			next_kick = now + UVM_KICK_RETRY_NS;
		}
		ts = uvm_abs_time(next_kick);
		pthread_cond_timedwait(&dom->ctl_cond, &dom->lock, &ts);
	}
	return 0;
}

static void uvm_pause_report(const struct uvm_domain *dom, uint64_t t0,
			     struct hv_pause_info *info)
{
	memset(info, 0, sizeof(*info));
	info->reach_ns = uvm_now_ns() - t0;
	info->nr_vcpus = dom->nr_vcpus;
	for (unsigned i = 0; i < dom->nr_vcpus; i++) {
		const struct uvm_vcpu *v = &dom->vcpus[i];

		if (v->state != UVM_VCPU_PARKED)
			continue;
		if (v->park_reason == UVM_PARK_PREEMPTED)
			info->preempted++;
		else
			info->at_boundary++;
	}
}

int uvm_pause_all(struct uvm_domain *dom, struct hv_pause_info *info)
{
	uint64_t t0 = uvm_now_ns();
	int rc;

	pthread_mutex_lock(&dom->lock);
	if (dom->paused) {
		pthread_mutex_unlock(&dom->lock);
		memset(info, 0, sizeof(*info));
		info->nr_vcpus = dom->nr_vcpus;
		return 0;
	}
	atomic_store(&dom->pause_req, true);
	pthread_cond_broadcast(&dom->vcpu_cond);
	rc = uvm_wait_parked(dom, t0);
	if (rc == 0) {
		dom->paused = true;
		uvm_pause_report(dom, t0, info);
	} else {
		atomic_store(&dom->pause_req, false);
		pthread_cond_broadcast(&dom->vcpu_cond);
		log_error("uvm: pause did not complete within %llu s",
			  UVM_PAUSE_GIVE_UP_NS / 1000000000ULL);
	}
	pthread_mutex_unlock(&dom->lock);
	return rc;
}

int uvm_unpause_all(struct uvm_domain *dom)
{
	pthread_mutex_lock(&dom->lock);
	for (unsigned i = 0; i < dom->nr_vcpus; i++) {
		struct uvm_vcpu *v = &dom->vcpus[i];

		if (v->state == UVM_VCPU_PARKED &&
		    v->park_reason == UVM_PARK_START && !v->loaded) {
			pthread_mutex_unlock(&dom->lock);
			log_error("uvm: vcpu %u has no state to run; load one first",
				  i);
			return -EINVAL;
		}
	}
	atomic_store(&dom->pause_req, false);
	dom->paused = false;
	pthread_cond_broadcast(&dom->vcpu_cond);
	pthread_mutex_unlock(&dom->lock);
	return 0;
}

/* ---- state in the frame ----------------------------------------------- */

static const int uvm_gpr_reg[16] = {
	REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI, REG_RDI, REG_RBP, REG_RSP,
	REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

void uvm_vcpu_save_frame(struct uvm_vcpu *v, struct hv_vcpu_state *st)
{
	const greg_t *g = v->frame->uc_mcontext.gregs;

	memset(st, 0, offsetof(struct hv_vcpu_state, xsave));
	for (int i = 0; i < 16; i++)
		st->gpr[i] = (uint64_t)g[uvm_gpr_reg[i]];
	st->rip = (uint64_t)g[REG_RIP];
	st->rflags = (uint64_t)g[REG_EFL];
	st->timer_deadline_ns = v->timer_deadline_ns;
	uvm_xsave_from_frame(v->frame, st);
}

int uvm_vcpu_load_frame(struct uvm_vcpu *v, const struct hv_vcpu_state *st)
{
	const struct uvm_domain *dom = v->dom;
	greg_t *g = v->frame->uc_mcontext.gregs;
	char why[160];
	int rc;

	if (!uvm_range_in_guest(dom, st->rip, 2) ||
	    !uvm_in_guest(dom, st->gpr[HV_RSP] - 1)) {
		log_error("uvm: vcpu %u: rip 0x%" PRIx64 " / rsp 0x%" PRIx64
			  " outside guest memory", v->id, st->rip,
			  st->gpr[HV_RSP]);
		return -EINVAL;
	}
	if ((st->rflags & ~UVM_RFLAGS_USER) != UVM_RFLAGS_FIXED) {
		log_error("uvm: vcpu %u: rflags 0x%" PRIx64 " has bits a user "
			  "context cannot hold", v->id, st->rflags);
		return -EINVAL;
	}
	rc = uvm_xsave_to_frame(v->frame, st, why, sizeof(why));
	if (rc != 0) {
		log_error("uvm: vcpu %u: %s", v->id, why);
		return rc;
	}
	for (int i = 0; i < 16; i++)
		g[uvm_gpr_reg[i]] = (greg_t)st->gpr[i];
	g[REG_RIP] = (greg_t)st->rip;
	g[REG_EFL] = (greg_t)st->rflags;
	v->timer_deadline_ns = st->timer_deadline_ns;
	v->loaded = true;
	return 0;
}
