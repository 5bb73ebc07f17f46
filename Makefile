# socketlab: `make run` and `make test` set everything up themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Debian packages the tests drive as real peers: a browser, nc/socat, openssl, compose, promtool,
# nft (kernel_loss listeners are tested with real nftables rules in a network namespace) and
# redis-server with redis-cli (a scenario run is checked against Redis's own command counts).
DEBS   := chromium socat netcat-openbsd openssl docker-compose prometheus iproute2 nftables \
          redis-server redis-tools
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck pytest bench system-deps clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The fast paths (app/native/_*.c) are compiled by the install, so a change to them reinstalls.
$(VENV)/.installed-run: pyproject.toml $(wildcard app/native/_*.c) | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@
	@echo 'socketlab is installed as $(abspath $(BIN))/socketlab; to have it on your PATH:'
	@echo '  export PATH="$(abspath $(BIN)):$$PATH"'

# python-statsd installs a top-level ``statsd`` package over the ``statsd`` library the
# test extras hold, so it lives in a folder of its own that one test puts on a child's path.
$(VENV)/.installed-test: pyproject.toml $(wildcard app/native/_*.c) | $(BIN)/python system-deps
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/pystatsd 'python-statsd>=3,<4'
	touch $@ $(VENV)/.installed-run

# gcc and Python's headers compile the fast paths (app/native) at install; the tests hold
# them built. Installs the Debian packages only when one is missing, so repeated runs cost nothing.
system-deps:
	@missing=""; \
	for cmd in chromium:chromium socat:socat nc:netcat-openbsd openssl:openssl \
	           docker-compose:docker-compose promtool:prometheus ip:iproute2 \
	           nft:nftables redis-server:redis-server redis-cli:redis-tools cc:gcc; do \
	  command -v $${cmd%%:*} >/dev/null 2>&1 || missing="$$missing $${cmd##*:}"; \
	done; \
	[ -f "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" ] \
	  || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

run: $(VENV)/.installed-run
	SOCKETLAB_MAKE_RUN=1 $(BIN)/socketlab serve $(ARGS)

# Beyond style: repeated blocks in app/ stay within their budget, and no import cycle
# (function-local and TYPE_CHECKING imports included). Both always run and print what they
# found, so one failing build lists everything to fix.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check app tests bench .ci
	$(BIN)/ruff format --check app tests bench .ci
	$(BIN)/python .ci/duplicate_code.py; status=$$?; \
	$(BIN)/python .ci/import_cycles.py && exit $$status

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# UDP listeners read and reply in batches (recvmmsg/sendmmsg, app/mmsg.py); their tests run
# a second time over the pure-Python fallback, forced by SOCKETLAB_NO_MMSG=1, so both paths
# are held to the same counts.
UDP_TESTS := tests/test_mmsg.py tests/test_listeners_echo.py tests/test_listeners_impair.py \
             tests/test_listeners_limits.py tests/test_listeners_respond.py \
             tests/test_listeners_sink.py tests/test_listeners_source.py \
             tests/test_listeners_fds.py tests/test_statsd.py tests/test_statsd_collector.py \
             tests/test_statsd_loop.py tests/test_statsd_etsy.py tests/test_statsd_clients.py \
             tests/test_oneway.py tests/test_replyguard.py tests/test_collectors.py \
             tests/test_collectors_syslog.py tests/test_collectors_forward.py

# The compiled fast paths (app/native) have the same second run, over their Python twins
# (SOCKETLAB_NO_NATIVE=1).
NATIVE_TESTS := tests/test_native.py
# The plain UDP echo's compiled drain (app/native/_udpecho.c).
NATIVE_TESTS += tests/test_udpecho_c.py tests/test_udpecho_native.py
# The plain TCP echo's compiled pass (app/native/_tcpecho.c; test_listeners_echo.py is in
# UDP_TESTS already).
NATIVE_TESTS += tests/test_tcpecho_native.py tests/test_listeners_adopted.py \
                tests/test_sockio.py tests/test_listeners_stream_buffers.py \
                tests/test_tcpinfo.py tests/test_tcpinfo_lab.py tests/test_tcpinfo_loss.py \
                tests/test_tcpinfo_sampling.py
# The pingpong client (app/native/_pingpong.c, app/runs/mux_native.py).
NATIVE_TESTS += tests/test_runs_mux_native.py tests/test_runs_mux.py tests/test_runs_mux_udp.py \
                tests/test_runs_pingpong.py tests/test_relay_truth.py tests/test_jitter_truth.py

# Both passes run whatever the first one finds, so one run reports every failure.
pytest: $(VENV)/.installed-test system-deps
	status=0; \
	SOCKETLAB_PYTHON_STATSD=$(abspath $(VENV))/pystatsd $(BIN)/pytest $(PYTEST_ARGS) || status=1; \
	SOCKETLAB_NO_MMSG=1 SOCKETLAB_NO_NATIVE=1 SOCKETLAB_PYTHON_STATSD=$(abspath $(VENV))/pystatsd \
	  $(BIN)/pytest -q $(UDP_TESTS) $(NATIVE_TESTS) || status=1; \
	exit $$status

test: lint typecheck pytest

# py-spy (the bench extra) profiles a server under load: bench/profile.py.
$(VENV)/.installed-bench: pyproject.toml $(VENV)/.installed-test
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

# iperf3 is the outside figure bench/receiver.py compares the sink's receiver side with.
bench: $(VENV)/.installed-bench
	@command -v iperf3 >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends iperf3 >/dev/null; }
	$(BIN)/python bench/run.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache app/native/_*.so

# The README's screenshots (static/docs/*.png): every section at 1280 px, 390 px and dark,
# taken by Chromium from a lab started for the purpose (tests/shoot.py).
screenshots: $(VENV)/.installed-test system-deps
	$(BIN)/python -m tests.shoot
