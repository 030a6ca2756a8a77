/*
 * vecguest.c - uvm guest that keeps live values in vector, mask, control
 * and general registers across long spins, hypercalls and pauses, and
 * checks that none of them changed.
 *
 * Each check runs one of the assembly routines below on a struct vec_run:
 * it saves the callee-saved registers, loads known patterns into
 *   rbx rbp r12-r15, MXCSR, and
 *   sse:    xmm0-15        (16 bytes each)
 *   avx:    ymm0-15        (32 bytes each)
 *   avx512: zmm0-31, k0-7  (64 bytes each; k as 16 bits, or 64 with BW)
 * then spins `spin` iterations of integer-only work (rax rcx r8-r11) with a
 * UVM_HC_YIELD hypercall every `yield` iterations, and stores every one of
 * those registers back.  Nothing between the loads and the stores touches
 * them, so any difference is state the host (or a save/restore of the
 * guest) lost.  The routines are in assembly so the compiler can neither
 * spill nor reload the registers.  AVX is used only if CPUID has AVX and
 * OSXSAVE and XCR0 enables SSE+AVX state; AVX-512 only if CPUID has
 * AVX512F and XCR0 enables opmask/ZMM_Hi256/Hi16_ZMM state.  A guest using
 * AVX or AVX-512 can only be restored on a host that has them too.
 *
 * cmdline:
 *   spin=N    spin iterations per check (default 10000000)
 *   yield=K   yield hypercall every K iterations (default 100000, 0 never)
 *   avx=0     do not use AVX;  avx512=0  do not use AVX-512
 *   smp=0     secondary vCPUs idle instead of running checks too
 *   print=P   print a summary every P rounds on vCPU 0 (default 100, 0 off)
 *   iters=N   power off after N rounds on vCPU 0 (default 0 = run forever);
 *             the exit code is 1 if any check failed
 *
 * Report: KIND = UVM_GUEST_VECGUEST, PASSES = rounds (all vCPUs; a round
 * runs every enabled mode once), CHECKS = passed mode runs, ERRORS =
 * failed mode runs; each failure prints the registers that differ.
 */
#include "sdk.h"

#define VR_SPIN      0
#define VR_YIELD     8
#define VR_MXCSR_IN  16
#define VR_MXCSR_OUT 20
#define VR_WORK      24
#define VR_GPR_IN    32
#define VR_GPR_OUT   80
#define VR_K_IN      128
#define VR_K_OUT     192
#define VR_VIN       256
#define VR_VOUT      2304

#define VEC_NGPR     6
#define VEC_NK       8
#define VEC_NVEC     32
#define VEC_VBYTES   64
#define VEC_MAX_ERROR_LINES 64

struct vec_run {
	uint64_t spin;
	uint64_t yield_every;
	uint32_t mxcsr_in;
	uint32_t mxcsr_out;
	uint64_t work;
	uint64_t gpr_in[VEC_NGPR];  /* rbx rbp r12 r13 r14 r15 */
	uint64_t gpr_out[VEC_NGPR];
	uint64_t k_in[VEC_NK];
	uint64_t k_out[VEC_NK];
	uint8_t vin[VEC_NVEC][VEC_VBYTES];
	uint8_t vout[VEC_NVEC][VEC_VBYTES];
};

_Static_assert(__builtin_offsetof(struct vec_run, spin) == VR_SPIN, "spin");
_Static_assert(__builtin_offsetof(struct vec_run, yield_every) == VR_YIELD,
	       "yield");
_Static_assert(__builtin_offsetof(struct vec_run, mxcsr_in) == VR_MXCSR_IN,
	       "mxcsr_in");
_Static_assert(__builtin_offsetof(struct vec_run, mxcsr_out) == VR_MXCSR_OUT,
	       "mxcsr_out");
_Static_assert(__builtin_offsetof(struct vec_run, work) == VR_WORK, "work");
_Static_assert(__builtin_offsetof(struct vec_run, gpr_in) == VR_GPR_IN,
	       "gpr_in");
_Static_assert(__builtin_offsetof(struct vec_run, gpr_out) == VR_GPR_OUT,
	       "gpr_out");
_Static_assert(__builtin_offsetof(struct vec_run, k_in) == VR_K_IN, "k_in");
_Static_assert(__builtin_offsetof(struct vec_run, k_out) == VR_K_OUT,
	       "k_out");
_Static_assert(__builtin_offsetof(struct vec_run, vin) == VR_VIN, "vin");
_Static_assert(__builtin_offsetof(struct vec_run, vout) == VR_VOUT, "vout");
_Static_assert(UVM_HC_YIELD == 4, "the spin loop hard-codes UVM_HC_YIELD");

void vec_run_sse(struct vec_run *r);
void vec_run_avx(struct vec_run *r);
void vec_run_avx512(struct vec_run *r);
void vec_run_avx512bw(struct vec_run *r);

#define VEC_STR2(x) #x
#define VEC_STR(x) VEC_STR2(x)
#define VEC_R0_15 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"
#define VEC_R0_31 VEC_R0_15 ",16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"

/* Function prologue/epilogue shared by all modes (rdi = struct vec_run). */
#define VEC_ASM_COMMON							\
	".set VR_SPIN, " VEC_STR(VR_SPIN) "\n"				\
	".set VR_YIELD, " VEC_STR(VR_YIELD) "\n"			\
	".set VR_MXCSR_IN, " VEC_STR(VR_MXCSR_IN) "\n"			\
	".set VR_MXCSR_OUT, " VEC_STR(VR_MXCSR_OUT) "\n"		\
	".set VR_WORK, " VEC_STR(VR_WORK) "\n"				\
	".set VR_GPR_IN, " VEC_STR(VR_GPR_IN) "\n"			\
	".set VR_GPR_OUT, " VEC_STR(VR_GPR_OUT) "\n"			\
	".set VR_K_IN, " VEC_STR(VR_K_IN) "\n"				\
	".set VR_K_OUT, " VEC_STR(VR_K_OUT) "\n"			\
	".set VR_VIN, " VEC_STR(VR_VIN) "\n"				\
	".set VR_VOUT, " VEC_STR(VR_VOUT) "\n"				\
	".macro VEC_ENTER\n"						\
	"	push %rbx\n	push %rbp\n	push %r12\n"		\
	"	push %r13\n	push %r14\n	push %r15\n"		\
	"	sub $8, %rsp\n"						\
	"	stmxcsr (%rsp)\n"					\
	"	ldmxcsr VR_MXCSR_IN(%rdi)\n"				\
	"	mov VR_GPR_IN+0(%rdi), %rbx\n"				\
	"	mov VR_GPR_IN+8(%rdi), %rbp\n"				\
	"	mov VR_GPR_IN+16(%rdi), %r12\n"				\
	"	mov VR_GPR_IN+24(%rdi), %r13\n"				\
	"	mov VR_GPR_IN+32(%rdi), %r14\n"				\
	"	mov VR_GPR_IN+40(%rdi), %r15\n"				\
	".endm\n"							\
	".macro VEC_LEAVE\n"						\
	"	mov %rbx, VR_GPR_OUT+0(%rdi)\n"				\
	"	mov %rbp, VR_GPR_OUT+8(%rdi)\n"				\
	"	mov %r12, VR_GPR_OUT+16(%rdi)\n"			\
	"	mov %r13, VR_GPR_OUT+24(%rdi)\n"			\
	"	mov %r14, VR_GPR_OUT+32(%rdi)\n"			\
	"	mov %r15, VR_GPR_OUT+40(%rdi)\n"			\
	"	stmxcsr VR_MXCSR_OUT(%rdi)\n"				\
	"	ldmxcsr (%rsp)\n"					\
	"	add $8, %rsp\n"						\
	"	pop %r15\n	pop %r14\n	pop %r13\n"		\
	"	pop %r12\n	pop %rbp\n	pop %rbx\n"		\
	".endm\n"							\
	/* integer-only spin; rdi is preserved by the hypercall */	\
	".macro VEC_SPIN\n"						\
	"	mov VR_SPIN(%rdi), %rcx\n"				\
	"	mov VR_YIELD(%rdi), %r8\n"				\
	"	mov %r8, %r9\n"						\
	"	movabs $0x9e3779b97f4a7c15, %r11\n"			\
	"	xor %r10d, %r10d\n"					\
	"1:	test %rcx, %rcx\n"					\
	"	jz 3f\n"						\
	"	imul %r11, %r10\n"					\
	"	add %rcx, %r10\n"					\
	"	rol $13, %r10\n"					\
	"	dec %rcx\n"						\
	"	test %r8, %r8\n"					\
	"	jz 1b\n"						\
	"	dec %r9\n"						\
	"	jnz 1b\n"						\
	"	mov %r8, %r9\n"						\
	"	mov $4, %eax\n" /* UVM_HC_YIELD */			\
	"	ud2\n"							\
	"	jmp 1b\n"						\
	"3:	mov %r10, VR_WORK(%rdi)\n"				\
	".endm\n"

#define VEC_ASM_FN_BEGIN(name)						\
	".text\n.p2align 4\n.globl " #name "\n"				\
	".type " #name ", @function\n" #name ":\n"			\
	"	VEC_ENTER\n"

#define VEC_ASM_FN_END(name)						\
	"	VEC_LEAVE\n	ret\n.size " #name ", . - " #name "\n"

#define VEC_ASM_MOVES(insn, regs, reg)					\
	".irp i," regs "\n	" insn " VR_VIN+64*\\i(%rdi), %" reg "\\i\n.endr\n" \
	"	VEC_SPIN\n"						\
	".irp i," regs "\n	" insn " %" reg "\\i, VR_VOUT+64*\\i(%rdi)\n.endr\n"

#define VEC_ASM_AVX512(name, kmov)					\
	VEC_ASM_FN_BEGIN(name)						\
	".irp i,0,1,2,3,4,5,6,7\n	" kmov " VR_K_IN+8*\\i(%rdi), %k\\i\n.endr\n" \
	VEC_ASM_MOVES("vmovdqu64", VEC_R0_31, "zmm")			\
	".irp i,0,1,2,3,4,5,6,7\n	" kmov " %k\\i, VR_K_OUT+8*\\i(%rdi)\n.endr\n" \
	"	vzeroupper\n"						\
	VEC_ASM_FN_END(name)

__asm__(VEC_ASM_COMMON
	VEC_ASM_FN_BEGIN(vec_run_sse)
	VEC_ASM_MOVES("movdqu", VEC_R0_15, "xmm")
	VEC_ASM_FN_END(vec_run_sse)
	VEC_ASM_FN_BEGIN(vec_run_avx)
	VEC_ASM_MOVES("vmovdqu", VEC_R0_15, "ymm")
	"	vzeroupper\n"
	VEC_ASM_FN_END(vec_run_avx)
	VEC_ASM_AVX512(vec_run_avx512, "kmovw")
	VEC_ASM_AVX512(vec_run_avx512bw, "kmovq"));

/* ---- feature detection ---- */

struct vec_mode {
	const char *name;
	const char *reg;     /* register name prefix */
	unsigned nvec;       /* vector registers checked */
	unsigned vbytes;     /* bytes per vector register */
	unsigned nk;         /* mask registers checked */
	uint64_t kmask;      /* bits of each mask register checked */
	void (*run)(struct vec_run *r);
};

static const struct vec_mode vec_sse = { "sse", "xmm", 16, 16, 0, 0,
					 vec_run_sse };
static const struct vec_mode vec_avx = { "avx", "ymm", 16, 32, 0, 0,
					 vec_run_avx };
static const struct vec_mode vec_avx512 = { "avx512", "zmm", 32, 64, 8,
					    0xffff, vec_run_avx512 };
static const struct vec_mode vec_avx512bw = { "avx512bw", "zmm", 32, 64, 8,
					      ~0ULL, vec_run_avx512bw };

static void vec_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

static uint64_t vec_xcr0(void)
{
	uint32_t lo, hi;

	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((uint64_t)hi << 32) | lo;
}

/* Fill modes[] with the modes to run; returns how many. */
static unsigned vec_detect(const struct vec_mode *modes[3])
{
	uint32_t r1[4], r7[4] = { 0 }, max;
	uint64_t xcr0;
	unsigned n = 0;

	modes[n++] = &vec_sse;
	vec_cpuid(0, 0, r1);
	max = r1[0];
	vec_cpuid(1, 0, r1);
	if (!(r1[2] & (1U << 27)) || !(r1[2] & (1U << 28)))
		return n; /* no OSXSAVE or no AVX */
	xcr0 = vec_xcr0();
	if ((xcr0 & 0x6) != 0x6 || !cmdline_u64("avx", 1))
		return n;
	modes[n++] = &vec_avx;
	if (max >= 7)
		vec_cpuid(7, 0, r7);
	if (!(r7[1] & (1U << 16)) || (xcr0 & 0xe0) != 0xe0 ||
	    !cmdline_u64("avx512", 1))
		return n;
	modes[n++] = (r7[1] & (1U << 30)) ? &vec_avx512bw : &vec_avx512;
	return n;
}

/* ---- patterns and checks ---- */

static uint64_t vec_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Distinct patterns for every register, byte and round. */
static void vec_fill(struct vec_run *r, uint64_t tag)
{
	for (unsigned i = 0; i < VEC_NVEC; i++) {
		for (unsigned w = 0; w < VEC_VBYTES / 8; w++) {
			uint64_t v = vec_mix(tag ^ ((uint64_t)i << 8) ^ w);

			__builtin_memcpy(&r->vin[i][w * 8], &v, 8);
		}
	}
	for (unsigned i = 0; i < VEC_NGPR; i++)
		r->gpr_in[i] = vec_mix(tag ^ 0x1000 ^ i);
	for (unsigned i = 0; i < VEC_NK; i++)
		r->k_in[i] = vec_mix(tag ^ 0x2000 ^ i);
	/* default MXCSR with the rounding mode and flush-to-zero varied */
	r->mxcsr_in = 0x1f80 | (uint32_t)((tag & 3) << 13) |
		      ((tag & 4) ? 0x8000 : 0);
	/* poison the outputs so a missing store shows up too */
	for (unsigned i = 0; i < VEC_NVEC; i++)
		for (unsigned b = 0; b < VEC_VBYTES; b++)
			r->vout[i][b] = (uint8_t)~r->vin[i][b];
	for (unsigned i = 0; i < VEC_NGPR; i++)
		r->gpr_out[i] = ~r->gpr_in[i];
	for (unsigned i = 0; i < VEC_NK; i++)
		r->k_out[i] = ~r->k_in[i];
	r->mxcsr_out = ~r->mxcsr_in;
}

struct vec_ctx {
	unsigned vcpu;
	uint64_t round;
	const struct vec_mode *mode;
	unsigned bad;
};

static uint64_t vec_error_lines;

static void vec_report(struct vec_ctx *c, const char *reg, unsigned idx,
		       unsigned byte, uint64_t got, uint64_t want)
{
	c->bad++;
	if (__atomic_add_fetch(&vec_error_lines, 1, __ATOMIC_RELAXED) >
	    VEC_MAX_ERROR_LINES)
		return;
	printf("vecguest: vcpu %u round %llu %s: %s%u byte %u: got 0x%llx, "
	       "expected 0x%llx\n", c->vcpu, (unsigned long long)c->round,
	       c->mode->name, reg, idx, byte, (unsigned long long)got,
	       (unsigned long long)want);
}

static const char *const vec_gpr_names[VEC_NGPR] = {
	"rbx", "rbp", "r12", "r13", "r14", "r15"
};

static void vec_check_regs(struct vec_ctx *c, const struct vec_run *r)
{
	const struct vec_mode *m = c->mode;

	for (unsigned i = 0; i < m->nvec; i++) {
		for (unsigned b = 0; b < m->vbytes; b++) {
			if (r->vout[i][b] != r->vin[i][b]) {
				vec_report(c, m->reg, i, b, r->vout[i][b],
					   r->vin[i][b]);
				break;
			}
		}
	}
	for (unsigned i = 0; i < m->nk; i++) {
		if ((r->k_out[i] ^ r->k_in[i]) & m->kmask)
			vec_report(c, "k", i, 0, r->k_out[i] & m->kmask,
				   r->k_in[i] & m->kmask);
	}
}

static void vec_check_other(struct vec_ctx *c, const struct vec_run *r)
{
	for (unsigned i = 0; i < VEC_NGPR; i++) {
		if (r->gpr_out[i] != r->gpr_in[i]) {
			c->bad++;
			printf("vecguest: vcpu %u round %llu %s: %s: got 0x%llx, "
			       "expected 0x%llx\n", c->vcpu,
			       (unsigned long long)c->round, c->mode->name,
			       vec_gpr_names[i],
			       (unsigned long long)r->gpr_out[i],
			       (unsigned long long)r->gpr_in[i]);
		}
	}
	if (r->mxcsr_out != r->mxcsr_in)
		vec_report(c, "mxcsr", 0, 0, r->mxcsr_out, r->mxcsr_in);
}

/* Run one mode once; returns 0 if every register survived. */
static int vec_check(struct vec_ctx *c, struct vec_run *r, uint64_t tag)
{
	vec_fill(r, tag);
	c->mode->run(r);
	c->bad = 0;
	vec_check_regs(c, r);
	vec_check_other(c, r);
	__atomic_fetch_add(&sdk_start_info->report[c->bad ? UVM_REPORT_ERRORS :
						   UVM_REPORT_CHECKS],
			   1, __ATOMIC_RELAXED);
	return c->bad ? -1 : 0;
}

/* Run rounds; vCPU 0 prints and stops after `iters` rounds (0 = never). */
static int vec_loop(unsigned vcpu, uint64_t iters)
{
	static struct vec_run runs[UVM_MAX_VCPUS];
	struct vec_run *r = &runs[vcpu % UVM_MAX_VCPUS];
	const struct vec_mode *modes[3];
	unsigned nmodes = vec_detect(modes);
	uint64_t print_every = cmdline_u64("print", 100);
	struct vec_ctx c = { .vcpu = vcpu };
	int failed = 0;

	r->spin = cmdline_u64("spin", 10000000);
	r->yield_every = cmdline_u64("yield", 100000);
	if (vcpu == 0)
		printf("vecguest: modes %s%s%s, spin %llu, yield %llu\n",
		       modes[0]->name, nmodes > 1 ? " avx" : "",
		       nmodes > 2 ? (modes[2] == &vec_avx512bw ?
				     " avx512+bw" : " avx512") : "",
		       (unsigned long long)r->spin,
		       (unsigned long long)r->yield_every);
	for (c.round = 1; iters == 0 || c.round <= iters; c.round++) {
		for (unsigned m = 0; m < nmodes; m++) {
			c.mode = modes[m];
			if (vec_check(&c, r, vec_mix(((uint64_t)vcpu << 56) ^
						     (c.round << 4) ^ m)) < 0)
				failed = 1;
		}
		__atomic_fetch_add(&sdk_start_info->report[UVM_REPORT_PASSES],
				   1, __ATOMIC_RELAXED);
		if (vcpu == 0 && print_every != 0 && c.round % print_every == 0)
			printf("vecguest: round %llu: %llu checks, %llu errors\n",
			       (unsigned long long)c.round,
			       (unsigned long long)report_get(UVM_REPORT_CHECKS),
			       (unsigned long long)report_get(UVM_REPORT_ERRORS));
	}
	return failed;
}

void secondary_main(const struct uvm_start_info *si, unsigned vcpu)
{
	(void)si;
	if (cmdline_u64("smp", 1))
		(void)vec_loop(vcpu, 0);
}

int main(const struct uvm_start_info *si)
{
	(void)si;
	report_set(UVM_REPORT_KIND, UVM_GUEST_VECGUEST);
	return vec_loop(0, cmdline_u64("iters", 0));
}
