# estrom: `make up` runs the whole system here; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
ROUTER_VENV := .venv-router

.PHONY: install lock up test test-unit lint bench fuzz soak exact several faults chaos differential engine browser shippers clients screenshots clean

# `make up ENGINE=elasticsearch7` starts Elasticsearch instead, when no engine answers;
# `make up ENGINE=none` (or `make install ENGINE=none`) builds no local node, for an engine that
# runs elsewhere (ESTROM_ELASTICSEARCH_URL), and needs no Java or Maven.
ENGINE ?= opensearch
PREREQS := $(if $(filter test,$(MAKECMDGOALS)),test,$(if $(filter none,$(ENGINE)),cluster,up))

# `make`, `make up` and `make test` first name whatever this machine lacks for them, and how to
# install it (dev/prereqs), before anything is built: checked as the Makefile is read, so it
# comes first whatever the order of targets (or -j).
ifneq ($(filter install up test,$(or $(MAKECMDGOALS),install)),)
ifneq ($(shell PYTHON='$(PYTHON)' dev/prereqs $(PREREQS) || echo missing),)
$(error the tools listed above are missing)
endif
endif

install: $(VENV)/.installed $(ROUTER_VENV)/.installed $(if $(filter none,$(ENGINE)),,engine) \
		router/web/node_modules/.installed

# Both virtualenvs are installed from lock files, every package at one version with its hashes
# (`make lock` makes them again from pyproject.toml and router/requirements.txt).
PIP_VERSION := 26.3

$(VENV)/.installed: pyproject.toml requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q pip==$(PIP_VERSION)
	$(VENV)/bin/pip install -q --require-hashes -r requirements-test.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

$(ROUTER_VENV)/.installed: router/requirements.lock
	$(PYTHON) -m venv $(ROUTER_VENV)
	$(ROUTER_VENV)/bin/pip install -q pip==$(PIP_VERSION)
	$(ROUTER_VENV)/bin/pip install -q --require-hashes -r router/requirements.lock
	# bjdata's wheel is built against NumPy 1.x and fails to import next to NumPy 2 ("_ARRAY_API
	# not found"), which kills crossbar's router worker: rebuild it against the installed NumPy,
	# from the source the lock file's hash names.
	sed -n '/^bjdata==/,/^[a-z]/p' router/requirements.lock | sed '/^[a-z]/{/^bjdata/!d}' \
		> $(ROUTER_VENV)/bjdata.lock
	$(ROUTER_VENV)/bin/pip install -q --no-cache-dir --no-binary bjdata --no-build-isolation \
		--force-reinstall --no-deps --require-hashes -r $(ROUTER_VENV)/bjdata.lock
	touch $@

# The lock files, resolved again (Python 3.11 on Linux) by pip-tools in a virtualenv of its own:
# estrom's dependencies (the images), with the test ones (the dev virtualenv), the router's.
COMPILE := .venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-find-links
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q pip-tools==7.6.2
	$(COMPILE) --output-file requirements.lock pyproject.toml
	$(COMPILE) --extra test --output-file requirements-test.lock pyproject.toml
	$(COMPILE) --output-file router/requirements.lock router/requirements.txt

# The live tail page's autobahn-js, from npm at the version the lock file pins.
router/web/node_modules/.installed: router/web/package.json router/web/package-lock.json
	cd router/web && npm ci --no-audit --no-fund
	touch $@

# autobahn-js for Node.js: the tests' WAMP client that no one here wrote.
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund
	touch $@

# The official Elasticsearch clients 8 and 9 and opensearch-py, each in a virtualenv of its own
# (one environment cannot hold two versions of a package), pinned in tests/clients/.
CLIENTS := es8 es9 opensearch
clients: $(foreach c,$(CLIENTS),.clients/$(c)/.installed)

.clients/%/.installed: tests/clients/%.txt
	rm -rf .clients/$*
	$(PYTHON) -m venv .clients/$*
	.clients/$*/bin/pip install -q -r tests/clients/$*.txt
	touch $@

# The page is tested in Debian's Chromium (Playwright cannot download a browser here).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# Real log shippers for the tests, from Debian: rsyslog (omelasticsearch) and syslog-ng (http(),
# elasticsearch-http()). Their packages conflict (each is the system's logger, and installing one
# removes the other and starts it as a service), so the daemons are unpacked into .shippers and
# run from there; only the libraries they need are installed.
SHIPPER_LIBS := libestr0 libfastjson4 liblognorm5 libcurl4 libcap2 libglib2.0-0 libivykis0 \
	libjson-c5 libnet1 libpcre3 libssl3 libwrap0
SHIPPER_DEBS := rsyslog rsyslog-elasticsearch syslog-ng-core syslog-ng-mod-http syslog-ng-scl

shippers: .shippers/.installed .shippers/bin/benthos .shippers/bin/otelcol .shippers/bin/filebeat \
	.shippers/bin/bulkindexer

.shippers/.installed: Makefile
	rm -rf .shippers/debs .shippers/root && mkdir -p .shippers/debs
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SHIPPER_LIBS)
	cd .shippers/debs && apt-get download -qq $(SHIPPER_DEBS)
	for deb in .shippers/debs/*.deb; do dpkg-deb -x $$deb .shippers/root; done
	touch $@

# Benthos, at the version tests/shippers/benthos/go.mod pins, from the Go module proxy.
.shippers/bin/benthos: tests/shippers/benthos/go.mod tests/shippers/benthos/go.sum
	cd tests/shippers/benthos && go build -o $(CURDIR)/.shippers/bin/benthos \
		github.com/redpanda-data/benthos/v4/cmd/benthos

# The OpenTelemetry Collector with only the components the tests use (tests/shippers/otelcol:
# filelog receiver, otlphttp and elasticsearch exporters), at the release its go.mod pins.
.shippers/bin/otelcol: tests/shippers/otelcol/go.mod tests/shippers/otelcol/go.sum tests/shippers/otelcol/main.go
	cd tests/shippers/otelcol && go build -o $(CURDIR)/.shippers/bin/otelcol .

# Filebeat OSS, at the release tests/shippers/filebeat/go.mod pins.
.shippers/bin/filebeat: tests/shippers/filebeat/go.mod tests/shippers/filebeat/go.sum tests/shippers/filebeat/main.go
	cd tests/shippers/filebeat && go build -o $(CURDIR)/.shippers/bin/filebeat .

# go-elasticsearch 8's esutil.BulkIndexer in a small program, at the version its go.mod pins.
.shippers/bin/bulkindexer: tests/shippers/bulkindexer/go.mod tests/shippers/bulkindexer/go.sum \
		tests/shippers/bulkindexer/main.go
	cd tests/shippers/bulkindexer && go build -o $(CURDIR)/.shippers/bin/bulkindexer .

engine: engine/target/.built engine/elasticsearch7/target/.built

# What both nodes' launchers share: a source directory their poms add.
LAUNCHER := engine/launcher/src/main/java/estrom/engine/Launcher.java

# Local search engine nodes for `make up` and the tests (OpenSearch 2.19, and Elasticsearch 7.17,
# the last major on Maven Central); the jars are cached in ~/.m2.
engine/target/.built: engine/pom.xml $(wildcard engine/src/main/java/estrom/engine/*.java) $(LAUNCHER)
	cd engine && mvn -q -B package
	touch $@

engine/elasticsearch7/target/.built: engine/elasticsearch7/pom.xml $(LAUNCHER) \
		$(wildcard engine/elasticsearch7/src/main/java/estrom/engine/es7/*.java)
	cd engine/elasticsearch7 && mvn -q -B package
	touch $@

# `make up BEATERS=3 TAILORS=2` runs several of each behind the one router.
BEATERS ?= 1
TAILORS ?= 1

up: install
	$(VENV)/bin/python -m dev.stack --engine $(ENGINE) --beaters $(BEATERS) --tailors $(TAILORS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The system tests run on both local nodes: `make test` builds them whatever ENGINE says.
test: install engine lint browser shippers clients tests/js/node_modules/.installed
	$(VENV)/bin/python -m pytest

# The unit layer alone: no search engine, router, browser or Java (the tests that do not use the
# running system, marked by tests/conftest.py: those of the tests/**/test_*_unit.py modules), with
# a shorter seeded fuzz run; `make test` runs it too, with the system tests.
test-unit: $(VENV)/.installed $(ROUTER_VENV)/.installed
	ESTROM_FUZZ_EXAMPLES=50 $(VENV)/bin/python -m pytest -m "not stack" -q

# Full-length fuzzing (`make test` runs a fixed seed and fewer): 100,000 generated queries and
# ingest bodies through the real parsers and validator, then 2,000 against the real stack.
fuzz: install
	ESTROM_FUZZ_EXAMPLES=25000 ESTROM_FUZZ_STACK_EXAMPLES=1000 ESTROM_FUZZ_RANDOM=1 \
		$(VENV)/bin/python -m pytest tests/fuzz

# 10,000 streams on one Tailor, opened at a steady pace (`make test` opens 1,000).
soak: install
	ESTROM_STORM_STREAMS=10000 ESTROM_STORM_RATE=200 $(VENV)/bin/python -m pytest tests/e2e/test_storm.py

# The differential test at length: 10,000 generated queries per case, a random seed (`make test`
# runs 500 with a fixed one). ESTROM_EXACT_SEED and ESTROM_FUZZ_RANDOM=0 repeat a run.
exact: install
	ESTROM_EXACT_QUERIES=10000 ESTROM_EXACT_DOCUMENTS=400 ESTROM_FUZZ_RANDOM=$${ESTROM_FUZZ_RANDOM:-1} \
		$(VENV)/bin/python -m pytest -s tests/e2e/test_exact_matches.py

# Three Beaters and two Tailors, new streams under load: 10 runs in a row (`make test` runs one).
several: install
	ESTROM_SEVERAL_RUNS=10 $(VENV)/bin/python -m pytest tests/e2e/test_several_beaters.py

# The store under faults: engine, router, Beater and Tailor restarted in turn at 500 documents/s
# with 20 resuming streams, on both engines (`make test` runs OpenSearch at 200/s); prints figures.
faults: install
	ESTROM_FAULTS_RATE=500 ESTROM_FAULTS_ENGINES=elasticsearch7,opensearch \
		$(VENV)/bin/python -m pytest -s tests/e2e/test_faults.py

# Parts killed with SIGKILL at random times for 10 minutes at 500 documents/s, on both engines,
# with a random seed (`make test` runs 60 s at 200/s on OpenSearch with a fixed one); prints
# figures. ESTROM_CHAOS_SEED=N repeats a run's choices of what to kill, and when.
# The aggregated tail against the engine's own aggregations, at length: 10,000 documents each
# side of the backfill's seam, 12 generated queries, a random seed (printed on failure), both engines.
differential: install
	ESTROM_DIFF_DOCS=10000 ESTROM_DIFF_QUERIES=12 ESTROM_DIFF_SEED=$${ESTROM_DIFF_SEED:-random} \
		$(VENV)/bin/python -m pytest -s tests/store/test_aggs_differential.py

chaos: install
	ESTROM_CHAOS_SECONDS=600 ESTROM_CHAOS_RATE=500 ESTROM_CHAOS_ENGINES=elasticsearch7,opensearch \
		ESTROM_CHAOS_SEED=$${ESTROM_CHAOS_SEED:-random} $(VENV)/bin/python -m pytest -s tests/e2e/test_chaos.py

# Every figure of issue 9 beside its goal, on a real engine node, the real stack and Chromium
# (about 20 minutes; BENCH_ARGS="--phases ..." runs some).
bench: install
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

# The pictures README and docs/ show, taken of the real stack (dev/screenshots.py).
screenshots: install browser tests/js/node_modules/.installed
	$(VENV)/bin/python -m dev.screenshots

clean:
	rm -rf $(VENV) $(ROUTER_VENV) engine/target engine/elasticsearch7/target .estrom \
		router/web/node_modules tests/js/node_modules .shippers .clients
