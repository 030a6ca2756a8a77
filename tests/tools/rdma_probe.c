/*
 * rdma_probe.c - prints the number of RDMA verbs devices on this host, for
 * tests/integration/test_rdma.sh to decide whether it can run.
 *
 *   rdma_probe        prints the count ("0" when there are none)
 *   rdma_probe -v     also lists the device names on stderr
 *
 * libibverbs is loaded at run time (dlopen) rather than linked, so this
 * builds and answers "0" also where rdma-core is not installed.  Always
 * exits 0 unless used wrongly.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

struct ibv_device;

int main(int argc, char **argv)
{
	struct ibv_device **(*get_list)(int *num) = NULL;
	void (*free_list)(struct ibv_device **list) = NULL;
	const char *(*get_name)(struct ibv_device *dev) = NULL;
	struct ibv_device **list;
	int verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
	int n = 0;
	void *lib;

	if (argc > 2 || (argc == 2 && !verbose)) {
		fprintf(stderr, "usage: %s [-v]\n", argv[0]);
		return 2;
	}
	lib = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		if (verbose)
			fprintf(stderr, "rdma_probe: %s\n", dlerror());
		printf("0\n");
		return 0;
	}
	/* POSIX's way of turning dlsym's answer into a function pointer */
	*(void **)&get_list = dlsym(lib, "ibv_get_device_list");
	*(void **)&free_list = dlsym(lib, "ibv_free_device_list");
	*(void **)&get_name = dlsym(lib, "ibv_get_device_name");
	list = get_list && free_list ? get_list(&n) : NULL;
	if (list == NULL)
		n = 0;
	for (int i = 0; verbose && list && get_name && i < n; i++)
		fprintf(stderr, "rdma_probe: device %d: %s\n", i,
			get_name(list[i]));
	if (list)
		free_list(list);
	printf("%d\n", n);
	dlclose(lib);
	return 0;
}
