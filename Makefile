# estrom: `make up` runs the whole system here; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
ROUTER_VENV := .venv-router

.PHONY: install up test lint engine clean

install: $(VENV)/.installed $(ROUTER_VENV)/.installed engine

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(ROUTER_VENV)/.installed: router/requirements.txt
	$(PYTHON) -m venv $(ROUTER_VENV)
	$(ROUTER_VENV)/bin/pip install -q -r router/requirements.txt
	# bjdata's wheel is built against NumPy 1.x and fails to import next to NumPy 2 ("_ARRAY_API
	# not found"), which kills crossbar's router worker: rebuild it against the installed NumPy.
	$(ROUTER_VENV)/bin/pip install -q --no-cache-dir --no-binary bjdata --no-build-isolation \
		--force-reinstall --no-deps bjdata==0.6.6
	touch $@

engine: engine/target/.built engine/elasticsearch7/target/.built

# Local search engine nodes for `make up` and the tests (OpenSearch 2.19, and Elasticsearch 7.17,
# the last major on Maven Central); the jars are cached in ~/.m2.
engine/target/.built: engine/pom.xml $(wildcard engine/src/main/java/estrom/engine/*.java)
	cd engine && mvn -q -B package
	touch $@

engine/elasticsearch7/target/.built: engine/elasticsearch7/pom.xml \
		$(wildcard engine/elasticsearch7/src/main/java/estrom/engine/es7/*.java)
	cd engine/elasticsearch7 && mvn -q -B package
	touch $@

# `make up ENGINE=elasticsearch7` starts Elasticsearch instead, when no engine answers.
ENGINE ?= opensearch

up: install
	$(VENV)/bin/python -m estrom.stack --engine $(ENGINE)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/python -m pytest

clean:
	rm -rf $(VENV) $(ROUTER_VENV) engine/target engine/elasticsearch7/target .estrom
