# tandem - top-level build.
#
#   make            build tandem, the guests, tests and benchmarks
#   make demo       install missing packages (as root), build, run the demo
#   make test       the same, then every test, then again under ASan+UBSan
#   make asan       build the sanitizer variant into build/asan
#   make bench      run the benchmarks (figures go to benchmarks/RESULTS.md by hand)
#   make clean
#
# Objects of the normal build go to build/, the sanitizer build to
# build/asan/.  Guests are freestanding and built once, into build/guests/.

CC        ?= gcc
CLANG     ?= clang
BUILD     ?= build
SAN       ?=
WARN      := -std=c11 -Wall -Wextra -Werror
INCLUDES  := -Icommon -Ihypervisor-hooks -Ihypervisor-hooks/uvm \
             -Ihypervisor-hooks/uvm/abi -Ihypervisor-hooks/uvm/guest \
             -Ihypervisor-hooks/xen -Itransport -Ireplicator -Idisk-sync \
             -Ifailover-daemon -I/usr/include/libnl3
# The RDMA back end is built when rdma-core's headers are present; without
# them transport/rdma_absent.c reports RDMA as not built.
HAVE_RDMA := $(shell test -e /usr/include/rdma/rdma_cma.h && \
             test -e /usr/include/infiniband/verbs.h && echo 1)
ifeq ($(BUILD),build/asan)
SAN       := -fsanitize=address,undefined -fno-sanitize-recover=undefined \
             -fno-omit-frame-pointer
endif
CFLAGS    := $(WARN) -D_GNU_SOURCE -g -O2 -pthread $(INCLUDES) $(SAN)
LDLIBS    := -ljson-c -lxxhash -llz4 -levent_openssl -levent_pthreads \
             -levent -lssl -lcrypto -lconfig -lpthread \
             -lxenctrl -lxenguest -lxenforeignmemory -lxenstore -lxentoollog \
             -lnl-route-3 -lnl-3
ifeq ($(HAVE_RDMA),1)
LDLIBS    += -lrdmacm -libverbs
endif

LIB_SRCS  := common/log.c common/errmsg.c \
             hypervisor-hooks/hv.c \
             hypervisor-hooks/uvm/arena.c \
             hypervisor-hooks/uvm/blk.c \
             hypervisor-hooks/uvm/console.c \
             hypervisor-hooks/uvm/dev.c \
             hypervisor-hooks/uvm/dirty.c \
             hypervisor-hooks/uvm/domain.c \
             hypervisor-hooks/uvm/elf.c \
             hypervisor-hooks/uvm/stream.c \
             hypervisor-hooks/uvm/stream_codec.c \
             hypervisor-hooks/uvm/stream_net.c \
             hypervisor-hooks/uvm/vcpu.c \
             hypervisor-hooks/uvm/xsave.c \
             hypervisor-hooks/uvm/guest/pagetest_check.c \
             $(wildcard hypervisor-hooks/xen/*.c) \
             $(wildcard replicator/*.c) $(wildcard disk-sync/*.c)
TP_SRCS   := $(filter-out transport/rdma.c transport/rdma_conn.c transport/rdma_absent.c,$(wildcard transport/*.c))
ifeq ($(HAVE_RDMA),1)
TP_SRCS   += transport/rdma.c transport/rdma_conn.c
else
TP_SRCS   += transport/rdma_absent.c
endif
LIB_SRCS  += $(TP_SRCS)
# failover-daemon/: two programs, `tandem` (the CLI) and `tandemd` (the
# daemon), over one set of shared objects (config, control socket, ...).
FD_MAINS  := failover-daemon/tandem.c failover-daemon/tandemd.c
FD_SRCS   := $(filter-out $(FD_MAINS),$(wildcard failover-daemon/*.c))
LIB_SRCS  += $(FD_SRCS)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libtandem.a
TANDEM    := $(BUILD)/tandem
TANDEMD   := $(BUILD)/tandemd

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)
BENCH_SRCS:= $(wildcard benchmarks/bench_*.c)
BENCH_BINS:= $(BENCH_SRCS:benchmarks/%.c=$(BUILD)/bench/%)

# ---- guests (freestanding, linked at the guest base) ----------------------
GUEST_DIR := hypervisor-hooks/uvm/guest
GUEST_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -ffreestanding \
             -fno-builtin -nostdlib -fpie -fno-plt -fno-stack-protector \
             -fcf-protection=none -fno-asynchronous-unwind-tables \
             -fno-unwind-tables -Ihypervisor-hooks/uvm/abi -I$(GUEST_DIR)/sdk
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,$(GUEST_DIR)/sdk/guest.ld \
             -Wl,--build-id=none -Wl,-z,noexecstack -Wl,-z,max-page-size=4096
SDK_SRCS  := $(wildcard $(GUEST_DIR)/sdk/*.c) $(GUEST_DIR)/sdk/crt0.S
SDK_OBJS  := $(patsubst $(GUEST_DIR)/sdk/%,build/guests/sdk/%.o,$(SDK_SRCS))
GUESTS    := pagetest memstress vecguest hcbench blktest kvstore
GUEST_ELFS:= $(GUESTS:%=build/guests/%.elf)

.PHONY: all deps demo test test-unit test-integration asan fuzz bench clean
.SECONDARY:

all: $(TANDEM) $(TANDEMD) $(GUEST_ELFS) $(UNIT_BINS) $(BENCH_BINS) $(TOOL_BINS)

deps:
	@scripts/deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# Xen's public headers test __STRICT_ANSI__ for anonymous unions and
# alignment attributes that C11 and GCC have; the language stays C11.
$(BUILD)/obj/hypervisor-hooks/xen/%.o: CFLAGS += -U__STRICT_ANSI__
$(BUILD)/tests/test_xen_replica: CFLAGS += -U__STRICT_ANSI__

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(TANDEM): $(BUILD)/obj/failover-daemon/tandem.o $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(TANDEMD): $(BUILD)/obj/failover-daemon/tandemd.o $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS) -lcmocka

# Test tools (the fault proxy, helpers of integration tests).
$(BUILD)/tools/%: tests/tools/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) -o $@ $(LDLIBS)

# The kvstore guest's parser, store and log format also build for the host.
KVSTORE_HOST_SRCS := $(addprefix hypervisor-hooks/uvm/guest/,kvstore_resp.c \
             kvstore_db.c kvstore_cmd.c kvstore_log.c)
$(BUILD)/tests/test_kvstore_resp: tests/unit/test_kvstore_resp.c $(KVSTORE_HOST_SRCS) $(wildcard hypervisor-hooks/uvm/guest/kvstore_*.h) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(KVSTORE_HOST_SRCS) $(LIB) -o $@ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: benchmarks/%.c benchmarks/benchlib.c benchmarks/benchlib.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Ibenchmarks $< benchmarks/benchlib.c $(LIB) -o $@ $(LDLIBS)

build/guests/sdk/%.c.o: $(GUEST_DIR)/sdk/%.c
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -MMD -MP -c $< -o $@

build/guests/sdk/%.S.o: $(GUEST_DIR)/sdk/%.S
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -c $< -o $@

build/guests/%.elf: $(GUEST_DIR)/%.c $(SDK_OBJS) $(GUEST_DIR)/sdk/guest.ld
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) $(SDK_OBJS) $< -o $@

# kvstore is several files; its parser and store also build for the host.
KVSTORE_SRCS := $(wildcard $(GUEST_DIR)/kvstore_*.c)
build/guests/kvstore.elf: $(GUEST_DIR)/kvstore.c $(KVSTORE_SRCS) $(wildcard $(GUEST_DIR)/kvstore_*.h) $(SDK_OBJS) $(GUEST_DIR)/sdk/guest.ld
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) $(SDK_OBJS) $(GUEST_DIR)/kvstore.c $(KVSTORE_SRCS) -o $@

# ---- sanitizer build --------------------------------------------------------
asan:
	$(MAKE) BUILD=build/asan build/asan/tandem build/asan/tandemd $(UNIT_SRCS:tests/unit/%.c=build/asan/tests/%) \
		$(TOOL_SRCS:tests/tools/%.c=build/asan/tools/%) $(GUEST_ELFS)

# ---- fuzzing (clang libFuzzer) ------------------------------------------------
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 20

build/fuzz/%: tests/fuzz/%.c transport/wire.c common/log.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@ -lxxhash

# Decoders of the transport: page codecs and link records.
build/fuzz/fuzz_codec: tests/fuzz/fuzz_codec.c transport/codec.c transport/wire.c common/log.c common/errmsg.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@ -llz4 -lxxhash -lpthread

build/fuzz/fuzz_link: tests/fuzz/fuzz_link.c transport/link_codec.c transport/wire.c common/log.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@ -lxxhash

# Decoders of the replication protocol: rep_proto bodies and DISK_WRITE.
build/fuzz/fuzz_rep: tests/fuzz/fuzz_rep.c replicator/rep_proto.c disk-sync/ds_write.c transport/wire.c common/log.c common/errmsg.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@ -lxxhash

# The protection config loader (over libconfig).
# config.c is instrumented; what it calls (tp_config_*) comes from the library.
build/fuzz/fuzz_config: tests/fuzz/fuzz_config.c failover-daemon/config.c build/libtandem.a
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@ $(LDLIBS)

# The xl save image scanner (reads images tandem did not write).
build/fuzz/fuzz_xen_image: tests/fuzz/fuzz_xen_image.c hypervisor-hooks/xen/xen_image.c common/errmsg.c common/log.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@

build/fuzz/fuzz_stream: tests/fuzz/fuzz_stream.c hypervisor-hooks/uvm/stream_codec.c
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@

build/fuzz/fuzz_resp: tests/fuzz/fuzz_resp.c $(KVSTORE_HOST_SRCS)
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE \
		$(INCLUDES) $^ -o $@

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
		name=$$(basename $$f); corpus=tests/fuzz/corpus/$${name#fuzz_}; \
		work=$$(mktemp -d); cp $$corpus/* $$work/ 2>/dev/null; \
		echo "fuzz: $$name for $(FUZZ_SECONDS) s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 $$work \
			>$$work.log 2>&1 || { tail -30 $$work.log; rm -rf $$work $$work.log; exit 1; }; \
		rm -rf $$work $$work.log; \
	done

# ---- top-level jobs -------------------------------------------------------------
demo: deps all
	scripts/demo.sh $(TANDEM)

test: deps all
	$(MAKE) asan
	$(MAKE) fuzz
	tests/run.sh

bench: all
	benchmarks/run.sh

# The nested Xen test bed (tests/xen/README.md): Xen 4.17 with a Debian dom0
# under QEMU (software emulation), built from Debian packages and cached in
# build/xen-cache; tandem's own binaries run in its dom0.  Needs root; CI
# runs it after `make test` (.ci/run).
.PHONY: test-xen
test-xen: all
	scripts/deps.sh --xen
	tests/xen/build.sh
	tests/xen/run.sh smoke.sh
	tests/xen/run.sh protect.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' -type f -not -path 'build/xen-cache/*' 2>/dev/null)
