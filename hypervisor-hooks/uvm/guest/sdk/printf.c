/*
 * printf.c - formatted output for uvm guests.
 *
 * vsnprintf() understands %d %i %u %x %X %o %p %s %c %% with the flags
 * '-' '0' '+' ' ' '#', a width and precision (digits or '*') and the
 * length modifiers hh h l ll z j t.  printf() formats into a bounded
 * buffer on the stack and appends it to the console ring (Xen's
 * xencons_interface "out" ring): bytes are written at out_prod, then
 * out_prod is published with a release store and the console port is
 * notified.  When the ring is full the writer notifies and yields until
 * the host has consumed enough.  One lock serialises writers, so lines
 * from different vCPUs never interleave within a printf().
 *
 * cons_write_direct() bypasses the ring with UVM_HC_CONSOLE_WRITE; panic()
 * uses it, so a panic is seen even when the ring or its lock is wedged.
 */
#include "sdk.h"

struct fmt_out {
	char *buf;
	size_t size;
	size_t len;
};

struct fmt_spec {
	int left;   /* '-' */
	int zero;   /* '0' */
	int plus;   /* '+' */
	int space;  /* ' ' */
	int alt;    /* '#' */
	int width;
	int prec;   /* -1: none */
	int lenmod; /* 0, 'H' (hh), 'h', 'l', 'L' (ll), 'z', 'j', 't' */
};

static void fmt_putc(struct fmt_out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void fmt_pad(struct fmt_out *o, char c, int n)
{
	while (n-- > 0)
		fmt_putc(o, c);
}

static void fmt_str(struct fmt_out *o, const struct fmt_spec *sp,
		    const char *s)
{
	int n = 0;

	if (s == NULL)
		s = "(null)";
	while (s[n] != '\0' && (sp->prec < 0 || n < sp->prec))
		n++;
	if (!sp->left)
		fmt_pad(o, ' ', sp->width - n);
	for (int i = 0; i < n; i++)
		fmt_putc(o, s[i]);
	if (sp->left)
		fmt_pad(o, ' ', sp->width - n);
}

static void fmt_num(struct fmt_out *o, const struct fmt_spec *sp,
		    uint64_t v, int neg, unsigned base, int upper,
		    const char *prefix)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];
	int nd = 0, plen = 0, sign = 0, zeros, pad;

	while (v != 0) {
		tmp[nd++] = digits[v % base];
		v /= base;
	}
	if (nd == 0 && sp->prec != 0)
		tmp[nd++] = '0';
	if (neg || sp->plus || sp->space)
		sign = neg ? '-' : (sp->plus ? '+' : ' ');
	while (prefix != NULL && prefix[plen] != '\0')
		plen++;
	zeros = sp->prec > nd ? sp->prec - nd : 0;
	pad = sp->width - nd - zeros - plen - (sign != 0);
	if (sp->zero && !sp->left && sp->prec < 0) {
		zeros += pad > 0 ? pad : 0;
		pad = 0;
	}
	if (!sp->left)
		fmt_pad(o, ' ', pad);
	if (sign)
		fmt_putc(o, (char)sign);
	for (int i = 0; i < plen; i++)
		fmt_putc(o, prefix[i]);
	fmt_pad(o, '0', zeros);
	while (nd > 0)
		fmt_putc(o, tmp[--nd]);
	if (sp->left)
		fmt_pad(o, ' ', pad);
}

static const char *fmt_parse(const char *f, struct fmt_spec *sp, va_list *ap)
{
	*sp = (struct fmt_spec){ .prec = -1 };
	for (;; f++) {
		if (*f == '-')
			sp->left = 1;
		else if (*f == '0')
			sp->zero = 1;
		else if (*f == '+')
			sp->plus = 1;
		else if (*f == ' ')
			sp->space = 1;
		else if (*f == '#')
			sp->alt = 1;
		else
			break;
	}
	if (*f == '*') {
		sp->width = va_arg(*ap, int);
		if (sp->width < 0) {
			sp->left = 1;
			sp->width = -sp->width;
		}
		f++;
	}
	while (*f >= '0' && *f <= '9')
		sp->width = sp->width * 10 + (*f++ - '0');
	if (*f == '.') {
		f++;
		sp->prec = 0;
		if (*f == '*') {
			sp->prec = va_arg(*ap, int);
			f++;
		}
		while (*f >= '0' && *f <= '9')
			sp->prec = sp->prec * 10 + (*f++ - '0');
	}
	if (f[0] == 'h' && f[1] == 'h') {
		sp->lenmod = 'H';
		f += 2;
	} else if (f[0] == 'l' && f[1] == 'l') {
		sp->lenmod = 'L';
		f += 2;
	} else if (*f == 'h' || *f == 'l' || *f == 'z' || *f == 'j' ||
		   *f == 't') {
		sp->lenmod = *f++;
	}
	return f;
}

static int64_t fmt_signed_arg(const struct fmt_spec *sp, va_list *ap)
{
	switch (sp->lenmod) {
	case 'H':
		return (signed char)va_arg(*ap, int);
	case 'h':
		return (short)va_arg(*ap, int);
	case 'l':
		return va_arg(*ap, long);
	case 'L':
		return va_arg(*ap, long long);
	case 'z':
	case 't':
		return va_arg(*ap, long);
	case 'j':
		return va_arg(*ap, int64_t);
	default:
		return va_arg(*ap, int);
	}
}

static uint64_t fmt_unsigned_arg(const struct fmt_spec *sp, va_list *ap)
{
	switch (sp->lenmod) {
	case 'H':
		return (unsigned char)va_arg(*ap, unsigned);
	case 'h':
		return (unsigned short)va_arg(*ap, unsigned);
	case 'l':
		return va_arg(*ap, unsigned long);
	case 'L':
		return va_arg(*ap, unsigned long long);
	case 'z':
		return va_arg(*ap, size_t);
	case 't':
		return (uint64_t)va_arg(*ap, long);
	case 'j':
		return va_arg(*ap, uint64_t);
	default:
		return va_arg(*ap, unsigned);
	}
}

static void fmt_conv(struct fmt_out *o, struct fmt_spec *sp, char c,
		     va_list *ap)
{
	int64_t s;
	char ch[2] = { 0, 0 };

	switch (c) {
	case 'd':
	case 'i':
		s = fmt_signed_arg(sp, ap);
		fmt_num(o, sp, s < 0 ? -(uint64_t)s : (uint64_t)s, s < 0, 10, 0,
			NULL);
		break;
	case 'u':
		fmt_num(o, sp, fmt_unsigned_arg(sp, ap), 0, 10, 0, NULL);
		break;
	case 'x':
	case 'X':
		fmt_num(o, sp, fmt_unsigned_arg(sp, ap), 0, 16, c == 'X',
			sp->alt ? (c == 'X' ? "0X" : "0x") : NULL);
		break;
	case 'o':
		fmt_num(o, sp, fmt_unsigned_arg(sp, ap), 0, 8, 0,
			sp->alt ? "0" : NULL);
		break;
	case 'p':
		fmt_num(o, sp, (uint64_t)(uintptr_t)va_arg(*ap, void *), 0, 16,
			0, "0x");
		break;
	case 's':
		fmt_str(o, sp, va_arg(*ap, const char *));
		break;
	case 'c':
		ch[0] = (char)va_arg(*ap, int);
		sp->prec = 1;
		fmt_str(o, sp, ch);
		break;
	default: /* unknown conversion: print it literally */
		fmt_putc(o, '%');
		if (c != '\0')
			fmt_putc(o, c);
		break;
	}
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct fmt_out o = { .buf = buf, .size = size, .len = 0 };
	struct fmt_spec sp;
	va_list aq;

	va_copy(aq, ap);
	while (*fmt != '\0') {
		if (*fmt != '%') {
			fmt_putc(&o, *fmt++);
			continue;
		}
		if (fmt[1] == '%') {
			fmt_putc(&o, '%');
			fmt += 2;
			continue;
		}
		fmt = fmt_parse(fmt + 1, &sp, &aq);
		fmt_conv(&o, &sp, *fmt, &aq);
		if (*fmt != '\0')
			fmt++;
	}
	va_end(aq);
	if (size > 0)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

void cons_write_direct(const char *buf, size_t len)
{
	while (len > 0) {
		long n = hc_console_write(buf, len);

		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static struct sdk_lock cons_lock;

/* Append to the ring; returns bytes not written (ring corrupted). */
static size_t cons_ring_put(struct uvm_console_ring *r, uint32_t port,
			    const char *buf, size_t len)
{
	uint32_t prod = __atomic_load_n(&r->out_prod, __ATOMIC_RELAXED);

	while (len > 0) {
		uint32_t cons = __atomic_load_n(&r->out_cons, __ATOMIC_ACQUIRE);
		uint32_t used = prod - cons, space, n;

		if (used > sizeof(r->out))
			return len;
		space = (uint32_t)sizeof(r->out) - used;
		if (space == 0) {
			(void)hc_evtchn_notify(port);
			(void)hc_yield();
			continue;
		}
		n = len < space ? (uint32_t)len : space;
		for (uint32_t i = 0; i < n; i++)
			r->out[UVM_CONS_IDX(prod + i, r->out)] = buf[i];
		prod += n;
		buf += n;
		len -= n;
		__atomic_store_n(&r->out_prod, prod, __ATOMIC_RELEASE);
	}
	return 0;
}

void cons_write(const char *buf, size_t len)
{
	struct uvm_start_info *si = sdk_start_info;
	size_t left;

	if (si == NULL) {
		cons_write_direct(buf, len);
		return;
	}
	sdk_lock(&cons_lock);
	left = cons_ring_put(pfn_to_virt(si->console_pfn), si->console_port,
			     buf, len);
	sdk_unlock(&cons_lock);
	(void)hc_evtchn_notify(si->console_port);
	if (left > 0)
		cons_write_direct(buf + (len - left), left);
}

int vprintf(const char *fmt, va_list ap)
{
	char buf[PRINTF_MAX];
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	size_t len = (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1;

	cons_write(buf, len);
	return n;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vprintf(fmt, ap);
	va_end(ap);
	return n;
}

void panic(const char *fmt, ...)
{
	char buf[PRINTF_MAX];
	va_list ap;
	int n;

	if (sdk_start_info != NULL)
		(void)hc_evtchn_notify(sdk_start_info->console_port);
	n = snprintf(buf, sizeof(buf), "panic: ");
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if ((size_t)n >= sizeof(buf) - 1)
		n = (int)sizeof(buf) - 2;
	if (n == 0 || buf[n - 1] != '\n')
		buf[n++] = '\n';
	cons_write_direct(buf, (size_t)n);
	hc_shutdown(UVM_SHUTDOWN_CRASH, 1);
}
