# etcd-rescue build, test and lab targets. `make deps` installs everything a
# fresh Debian machine with Go needs; every other target assumes it ran.
SHELL := /bin/bash
GO ?= go
CACHE ?= $(CURDIR)/.cache
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -buildid= -X github.com/etcd-rescue/etcd-rescue/internal/version.Version=$(VERSION)
export CGO_ENABLED := 0

.PHONY: all deps build lab test vet e2e bench image clean

all: build

deps:
	bash scripts/deps.sh

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/etcd-rescue ./cmd/etcd-rescue

# The QEMU lab (`etcd-rescue-lab drill`, and the lab master OS's init): a
# binary of its own, so the rescue image's etcd-rescue links none of it.
lab:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/etcd-rescue-lab ./cmd/etcd-rescue-lab

# go vet, gofmt and go mod tidy must leave no diff.
vet:
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { $(GO) mod tidy -diff; echo "go mod tidy needed"; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit and integration tests (real etcd, real QEMU): installs what is
# missing first, so it is the one command a fresh machine needs.
test: deps kernel etcd-versions kube-apiserver vet
	$(GO) test -count=1 -timeout 60m ./...

clean:
	rm -rf $(BIN)

# The Debian kernel the rescue image boots, unpacked and indexed by depmod
# into $(CACHE)/kernel/<version> (current links to it): KERNEL_FLAVOUR=generic
# (default: the drivers of physical servers and VMs) or cloud (VMs only,
# smaller). The other flavour is fetched too (without becoming current), for
# the tests of both and the bench's side-by-side image figures.
KERNEL_FLAVOUR ?= generic
OTHER_FLAVOUR = $(if $(filter cloud,$(KERNEL_FLAVOUR)),generic,cloud)
.PHONY: kernel
kernel:
	@bash scripts/fetch-kernel.sh $(CACHE) $(KERNEL_FLAVOUR) >/dev/null
	@KERNEL_KEEP_CURRENT=1 bash scripts/fetch-kernel.sh $(CACHE) $(OTHER_FLAVOUR) >/dev/null
	@echo "kernel: $$(cat $(CACHE)/kernel/VERSION) ($(KERNEL_FLAVOUR)) in $(CACHE)/kernel/current"

# The rescue image in every format (pxe files, raw EFI disk, iso) with sizes.
IMAGE_OUT ?= $(CURDIR)/out/image
image: build kernel
	$(BIN)/etcd-rescue build-image --format all --out $(IMAGE_OUT) --binary $(BIN)/etcd-rescue \
		--kernel "$$(ls $(CACHE)/kernel/current/boot/vmlinuz-*)" \
		--modules "$$(ls -d $(CACHE)/kernel/current/lib/modules/*)"

# Real etcd servers of the versions clusters run, for the compatibility
# tests: 3.4 comes from Debian (make deps), 3.3, 3.5 and 3.6 are built here.
ETCD_VERSIONS ?= 3.3.27 3.5.35 3.6.16
.PHONY: etcd-versions
etcd-versions:
	@for v in $(ETCD_VERSIONS); do bash scripts/build-etcd.sh $$v $(CACHE) >/dev/null || exit 1; done
	@echo "etcd-versions: $(ETCD_VERSIONS) in $(CACHE)/etcd"

# Benchmarks (a program, not timed tests): restore and verification against
# etcdutl on 256 MiB to 8 GiB snapshots, the rescue image, and the QEMU lab
# drill's phase times at BENCH_DRILL_KEYS keys (as root, under TCG; empty
# leaves the drill out); writes bench/RESULTS.md.
BENCH_SIZES ?= 256M,1G,4G,8G
BENCH_DRILL_KEYS ?= 10000,100000
.PHONY: bench
bench: build lab kernel
	$(GO) run ./bench -sizes $(BENCH_SIZES) -etcd-rescue $(BIN)/etcd-rescue -lab $(BIN)/etcd-rescue-lab -out bench/RESULTS.md \
		-drill-keys '$(BENCH_DRILL_KEYS)' -kernels generic=$(CACHE)/kernel/generic,cloud=$(CACHE)/kernel/cloud \
		-kernel "$$(ls $(CACHE)/kernel/current/boot/vmlinuz-*)" \
		-modules "$$(ls -d $(CACHE)/kernel/current/lib/modules/*)"

# Only the rescue image's figures by kernel flavour (generic and cloud, side
# by side): initramfs size, boot to the first console line, first line to
# the disks listed on virtio and AHCI; rewrites that section of
# bench/RESULTS.md and leaves the rest.
BENCH_BOOTS ?= 3
.PHONY: bench-image
bench-image: build kernel
	$(GO) run ./bench -image-only -boots $(BENCH_BOOTS) -etcd-rescue $(BIN)/etcd-rescue -out bench/RESULTS.md \
		-kernels generic=$(CACHE)/kernel/generic,cloud=$(CACHE)/kernel/cloud

# The QEMU lab drill (as root: it makes a network namespace with a bridge
# and taps): three OpenShift 4.3 masters form a TLS cluster, take a backup,
# lose two masters and are recovered with the rescue image; then every key
# is checked; then the same with kubeadm masters. A corrupted backup must end
# in RESTORE-FAILED with the old data dir intact, and a survivor powered off
# during its restore must resume. DRILL_KEYS sets the keys of the OpenShift
# drill (default 10000); its report's JSON goes to $(DRILL_JSON).
DRILL_KEYS ?= 10000
DRILL_JSON ?= $(CURDIR)/out/drill-report.json
.PHONY: e2e
e2e: kernel
	@mkdir -p $(dir $(DRILL_JSON))
	DRILL_KEYS=$(DRILL_KEYS) DRILL_JSON=$(DRILL_JSON) $(GO) test -count=1 -timeout 30m -v ./test/drill/ 2>&1 | \
		tee $(CURDIR)/out/drill.log | grep --line-buffered -E '^(=== RUN|--- |PASS|FAIL|ok )|=== phase|drill lab built|^  [^ ]|^== ' ; \
		test $${PIPESTATUS[0]} -eq 0

# A real kube-apiserver and kube-controller-manager (its CSR signer) of
# client-go's Kubernetes release, for the tests of the cluster-side steps
# (orchestrator/kube/..., cmd/etcd-rescue): built once from k8s.io/kubernetes
# (measured on 2 busy cores: 13 min for kube-apiserver, then 4 min for
# kube-controller-manager) and cached outside the repository in
# ${ETCD_RESCUE_CACHE:-~/.cache/etcd-rescue}/kube/<version>/.
KUBE_VERSION ?= v1.37.2
.PHONY: kube-apiserver
kube-apiserver:
	@nice -n 19 bash scripts/build-kube.sh $(KUBE_VERSION) kube-apiserver kube-controller-manager
