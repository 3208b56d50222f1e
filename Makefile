# RoadSense: `make demo` runs the whole flow locally; `make test` runs lint,
# type checks and the tests. Both create .venv and install what they need.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# torch first and pinned: this exact build satisfies the `train` extra's range
# from a local wheel where one exists, instead of pulling a multi-GB CUDA build.
TORCH  := torch==2.13.0
# `train detector` converts the ONNX detector to torch. onnx2torch asks for torchvision,
# which does not import beside this torch (docs/pitfalls.md #7) and would pull another
# torch: it is installed without dependencies and the training registers a stand-in.
ONNX2TORCH := onnx2torch>=1.5.15
MYPY_PACKAGES := $(foreach p,core cli edge cloud proto models provisioning bench harness,-p roadsense.$(p))

.PHONY: demo test lint typecheck unit unit-half-1 unit-half-2 install install-dev mosquitto postgresql chromium gstreamer-rtsp proto clean

demo: $(VENV)/.deps-all
	$(PIP) install --quiet --no-deps --no-build-isolation .
	$(BIN)/roadsense demo --duration 60

test: $(VENV)/.deps-dev mosquitto postgresql chromium gstreamer-rtsp
	$(PIP) install --quiet --no-deps --no-build-isolation .
	$(MAKE) --no-print-directory lint
	# The tests mostly wait on brokers, servers and the clock (about half a core each):
	# mypy and two halves of the suite run side by side, each half printing its output
	# when it ends (make test stays well under 15 minutes on two cores).
	$(MAKE) --no-print-directory -j3 --output-sync=target typecheck unit-half-1 unit-half-2

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The package maps folders onto roadsense.<folder>; mypy checks the installed
# copy (its error paths point into .venv, one to one with the folders here).
typecheck:
	cd $(VENV) && bin/mypy --config-file ../pyproject.toml $(MYPY_PACKAGES)
	$(BIN)/mypy --config-file pyproject.toml tests

unit:
	$(BIN)/python -m pytest -q --durations=30

# Two halves of about the same length, split by folder. Every folder not named in the
# first half runs in the second, so a new test folder is never left out.
UNIT_HALF_1 := tests/cloud tests/fleet tests/forecast tests/models tests/edge_models

unit-half-1:
	$(BIN)/python -m pytest -q --durations=15 $(UNIT_HALF_1)

unit-half-2:
	$(BIN)/python -m pytest -q --durations=15 tests $(UNIT_HALF_1:%=--ignore=%)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip "setuptools>=77"

$(VENV)/.deps-all: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet --no-build-isolation ".[all]"
	$(PIP) install --quiet --no-deps "$(ONNX2TORCH)"
	touch $@

$(VENV)/.deps-dev: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet --no-build-isolation ".[all,dev]"
	$(PIP) install --quiet --no-deps "$(ONNX2TORCH)"
	touch $@ $(VENV)/.deps-all

# $(call ensure_packages,PROBE,DEBIAN PACKAGES,WHAT FOR): nothing when PROBE succeeds;
# else the packages with apt-get (as root on Debian/Ubuntu), or how to install them.
define ensure_packages
	@if { $(1); } >/dev/null 2>&1; then \
		exit 0; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing $(2) with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	else \
		echo "make test needs $(3): install it (Debian/Ubuntu: sudo apt-get install $(2)) and run make test again" >&2; \
		exit 1; \
	fi
endef

# The tests run a real Mosquitto on free loopback ports.
mosquitto:
	$(call ensure_packages,command -v mosquitto || test -x /usr/sbin/mosquitto,mosquitto,the Mosquitto broker)

# The store tests start their own throwaway PostgreSQL cluster (initdb in a temp
# folder, a socket there, no TCP) from Debian's server binaries; none need be running.
postgresql:
	$(call ensure_packages,ls /usr/lib/postgresql/*/bin/initdb || command -v initdb,postgresql,the PostgreSQL server binaries)

# The dashboard's browser tests drive Debian's Chromium through Playwright
# (executable_path=/usr/bin/chromium); no browser is ever downloaded.
chromium:
	$(call ensure_packages,test -x /usr/bin/chromium,chromium chromium-driver,Chromium for the dashboard's browser tests)

# The RTSP camera tests run GStreamer's RTSP server under Debian's /usr/bin/python3
# (its bindings do not load in the venv; docs/pitfalls.md #14).
GST_RTSP_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
GST_RTSP_PROBE := /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0'); \
	from gi.repository import Gst, GstRtspServer; Gst.init(None); \
	assert Gst.ElementFactory.find('x264enc') and Gst.ElementFactory.find('avdec_h264')"
gstreamer-rtsp:
	$(call ensure_packages,$(GST_RTSP_PROBE),$(GST_RTSP_PACKAGES),GStreamer's RTSP server for the RTSP camera tests)

proto: $(VENV)/.deps-dev
	$(BIN)/python proto/generate.py

clean:
	rm -rf $(VENV) build *.egg-info test-artifacts
