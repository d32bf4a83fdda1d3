# Quick start targets. Each first makes sure a Vulkan driver is present; on a Linux machine
# without one it installs Mesa's software driver (lavapipe), so everything runs on the CPU.

CARGO ?= cargo

# Mesa's device-selection layer probes Wayland and complains on headless machines; the binary
# switches it off itself, and this does the same for the test binaries (a library's programs).
ifeq ($(origin MESA_VK_DEVICE_SELECT), undefined)
export NODEVICE_SELECT ?= 1
endif

.PHONY: train test bench info vulkan

train: vulkan
	$(CARGO) run --release -- train

test: vulkan
	$(CARGO) test --release

bench: vulkan
	$(CARGO) run --release -- bench

info: vulkan
	$(CARGO) run --release -- info

# Linux only: a Vulkan loader plus at least one driver manifest means a driver is there.
vulkan:
	@if [ "$$(uname -s)" = Linux ]; then \
	  icd=""; for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do [ -e "$$f" ] && icd=1; done; \
	  if [ -n "$$icd" ] \
	     && { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libvulkan\.so\.1'; then \
	    :; \
	  elif command -v apt-get >/dev/null 2>&1; then \
	    echo "No Vulkan driver found: installing Mesa's software Vulkan driver (apt-get install mesa-vulkan-drivers) so rnn-wgpu can run on the CPU."; \
	    if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
	    log="$${TMPDIR:-/tmp}/rnn-wgpu-apt.$$$$"; \
	    if ! { $$sudo apt-get update -qq && \
	           $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers; } >"$$log" 2>&1; then \
	      cat "$$log"; rm -f "$$log"; echo "Installing mesa-vulkan-drivers failed (above)."; exit 1; \
	    fi; \
	    rm -f "$$log"; \
	  else \
	    echo "No Vulkan driver found and no apt-get: install your distribution's Mesa Vulkan drivers (lavapipe) or a GPU driver."; \
	  fi; \
	fi
