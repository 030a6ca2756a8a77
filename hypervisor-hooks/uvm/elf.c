/*
 * elf.c - load a freestanding x86-64 guest image into the arena.
 *
 * Accepts only static ELF64 x86-64 executables linked at UVM_IMAGE_BASE:
 * every PT_LOAD must lie inside the arena below the vCPU stacks, its file
 * bytes inside the file, and the entry point inside an executable segment.
 * Anything else is refused with a message naming the file and the value.
 * The file is read whole (bounded) and parsed from that buffer only.
 */
#include "uvm.h"
#include "log.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ELF_MAX_FILE (256ULL << 20)
#define ELF_MAX_PHDRS 64

struct elf_image {
	const char *path;
	uint8_t *data;
	size_t size;
	uint64_t lo, hi; /* allowed guest range for segments */
};

static int elf_read_file(const char *path, uint8_t **data, size_t *size)
{
	struct stat st;
	ssize_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0) {
		rc = -errno;
		log_error("uvm: guest image %s: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size > ELF_MAX_FILE) {
		log_error("uvm: guest image %s: not a regular file of at most "
			  "%llu MiB", path, ELF_MAX_FILE >> 20);
		close(fd);
		return -EINVAL;
	}
	*size = (size_t)st.st_size;
	*data = malloc(*size ? *size : 1);
	while (*data != NULL && (size_t)got < *size) {
		ssize_t n = read(fd, *data + got, *size - (size_t)got);

		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			break;
		}
		got += n;
	}
	close(fd);
	if (*data == NULL)
		return -ENOMEM;
	if (rc != 0)
		log_error("uvm: guest image %s: read failed: %s", path,
			  strerror(-rc));
	return rc;
}

static int elf_check_header(const struct elf_image *im, const Elf64_Ehdr *eh)
{
	const char *why = NULL;

	if (im->size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		why = "not an ELF file";
	else if (eh->e_ident[EI_CLASS] != ELFCLASS64 ||
		 eh->e_ident[EI_DATA] != ELFDATA2LSB)
		why = "not a 64-bit little-endian ELF";
	else if (eh->e_machine != EM_X86_64)
		why = "not an x86-64 ELF";
	else if (eh->e_type != ET_EXEC)
		why = "not a static executable (ET_EXEC); link with the guest SDK";
	else if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 ||
		 eh->e_phnum > ELF_MAX_PHDRS ||
		 eh->e_phoff > im->size || eh->e_phoff % 8 != 0 ||
		 (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > im->size - eh->e_phoff)
		why = "program headers missing or outside the file";
	if (why != NULL) {
		log_error("uvm: guest image %s: %s", im->path, why);
		return -ENOEXEC;
	}
	return 0;
}

static int elf_check_segment(const struct elf_image *im, unsigned i,
			     const Elf64_Phdr *ph)
{
	if (ph->p_filesz > ph->p_memsz || ph->p_offset > im->size ||
	    ph->p_filesz > im->size - ph->p_offset) {
		log_error("uvm: guest image %s: segment %u file range "
			  "[0x%" PRIx64 ", +0x%" PRIx64 ") lies outside the "
			  "%zu-byte file", im->path, i, ph->p_offset,
			  ph->p_filesz, im->size);
		return -ENOEXEC;
	}
	if (ph->p_vaddr < im->lo || ph->p_memsz > im->hi - im->lo ||
	    ph->p_vaddr - im->lo > im->hi - im->lo - ph->p_memsz) {
		log_error("uvm: guest image %s: segment %u at 0x%" PRIx64
			  " (+0x%" PRIx64 ") is outside guest memory "
			  "[0x%" PRIx64 ", 0x%" PRIx64 ")", im->path, i,
			  ph->p_vaddr, ph->p_memsz, im->lo, im->hi);
		return -ENOEXEC;
	}
	return 0;
}

static bool elf_entry_ok(const Elf64_Phdr *ph, unsigned n, uint64_t entry)
{
	for (unsigned i = 0; i < n; i++)
		if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X) &&
		    entry >= ph[i].p_vaddr &&
		    entry - ph[i].p_vaddr < ph[i].p_memsz)
			return true;
	return false;
}

static int elf_load_segments(const struct elf_image *im, const Elf64_Ehdr *eh,
			     uint8_t *arena, uint64_t *image_end)
{
	const Elf64_Phdr *ph = (const Elf64_Phdr *)(im->data + eh->e_phoff);
	unsigned loads = 0;
	int rc;

	*image_end = im->lo;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_LOAD)
			continue;
		rc = elf_check_segment(im, i, &ph[i]);
		if (rc != 0)
			return rc;
		memcpy(arena + (ph[i].p_vaddr - UVM_GUEST_BASE),
		       im->data + ph[i].p_offset, ph[i].p_filesz);
		if (ph[i].p_vaddr + ph[i].p_memsz > *image_end)
			*image_end = ph[i].p_vaddr + ph[i].p_memsz;
		loads++;
	}
	if (loads == 0 || !elf_entry_ok(ph, eh->e_phnum, eh->e_entry)) {
		log_error("uvm: guest image %s: entry point 0x%" PRIx64
			  " is not inside a loaded executable segment",
			  im->path, (uint64_t)eh->e_entry);
		return -ENOEXEC;
	}
	return 0;
}

int uvm_elf_load(const char *path, uint8_t *arena, uint64_t arena_size,
		 uint64_t *entry, uint64_t *image_end)
{
	struct elf_image im = { .path = path };
	const Elf64_Ehdr *eh;
	int rc = elf_read_file(path, &im.data, &im.size);

	if (rc != 0) {
		free(im.data);
		return rc;
	}
	im.lo = UVM_IMAGE_BASE;
	im.hi = UVM_GUEST_BASE + arena_size;
	eh = (const Elf64_Ehdr *)im.data;
	rc = elf_check_header(&im, eh);
	if (rc == 0)
		rc = elf_load_segments(&im, eh, arena, image_end);
	if (rc == 0)
		*entry = eh->e_entry;
	free(im.data);
	return rc;
}
