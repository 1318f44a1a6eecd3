package envoy.authz_test

import rego.v1

import data.envoy.authz

req(src, dst, method, path) := {"attributes": {
	"source": {"principal": src},
	"destination": {"principal": dst},
	"request": {"http": {"method": method, "path": path, "headers": {}}},
}}

test_frontend_reads_backend_api if {
	authz.allow with input as req(authz.frontend, authz.backend, "GET", "/api/items")
}

test_frontend_cannot_write_backend_api if {
	not authz.allow with input as req(authz.frontend, authz.backend, "DELETE", "/api/items")
}

test_frontend_cannot_reach_database if {
	not authz.allow with input as req(authz.frontend, authz.database, "GET", "/query")
}

test_backend_queries_database if {
	authz.allow with input as req(authz.backend, authz.database, "POST", "/query")
}

test_unauthenticated_caller_is_denied if {
	not authz.allow with input as req("", authz.backend, "GET", "/api/items")
}

test_health_is_open_to_the_trust_domain if {
	authz.allow with input as req(authz.database, authz.frontend, "GET", "/healthz")
}
