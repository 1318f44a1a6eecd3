# Tests for authz.rego; run with `warden policy test examples/mesh` (like `opa test`).
#
# The IDs are spelled out here rather than taken from `authz.frontend` etc.: regorus
# 0.14.1 mis-evaluates `x with input as f(data.pkg.rule)` when the `with` value refers to
# rules of the package under test (OPA passes those tests; our differential test against
# OPA, filter/tests/opa_differential.py, caught it). Keep `with` values free of such refs.
package envoy.authz_test

import rego.v1

import data.envoy.authz

frontend := "spiffe://example.org/ns/demo/sa/frontend"

backend := "spiffe://example.org/ns/demo/sa/backend"

database := "spiffe://example.org/ns/demo/sa/database"

# The input the Warden filter builds (OPA-Envoy shape). Without a verified peer the filter
# leaves `source.principal` and `source_principal` out; `src == ""` models that.
req(src, dst, method, path) := {"attributes": object.union(
	{
		"destination": {"principal": dst},
		"request": {"http": {"method": method, "path": path, "headers": {}}},
	},
	{"source": principal(src)},
)}

principal(src) := {} if src == ""

principal(src) := {"principal": src} if src != ""

test_frontend_reads_backend_api if {
	authz.allow with input as req(frontend, backend, "GET", "/api/items")
}

test_frontend_may_use_head_on_backend_api if {
	authz.allow with input as req(frontend, backend, "HEAD", "/api/items/7")
}

test_frontend_cannot_write_backend_api if {
	not authz.allow with input as req(frontend, backend, "DELETE", "/api/items")
}

test_frontend_cannot_reach_backend_outside_api if {
	not authz.allow with input as req(frontend, backend, "GET", "/admin")
}

test_frontend_cannot_reach_database if {
	not authz.allow with input as req(frontend, database, "GET", "/query")
}

test_backend_queries_database if {
	authz.allow with input as req(backend, database, "POST", "/query")
}

test_database_cannot_call_backend_api if {
	not authz.allow with input as req(database, backend, "GET", "/api/items")
}

test_unauthenticated_caller_is_denied if {
	not authz.allow with input as req("", backend, "GET", "/api/items")
}

test_unauthenticated_caller_gets_no_health if {
	not authz.allow with input as req("", backend, "GET", "/healthz")
}

test_health_is_open_to_the_trust_domain if {
	authz.allow with input as req(database, frontend, "GET", "/healthz")
}

test_other_trust_domain_gets_no_health if {
	not authz.allow with input as req("spiffe://evil.example/ns/demo/sa/frontend", frontend, "GET", "/healthz")
}
