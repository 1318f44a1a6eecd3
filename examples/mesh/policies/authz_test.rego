package envoy.authz_test

import rego.v1

import data.envoy.authz

# Inputs are bound to a variable first: regorus (the engine inside Envoy) does not accept
# a function call directly as a `with` value.

req(src, dst, method, path) := {"attributes": {
	"source": {"principal": src},
	"destination": {"principal": dst},
	"request": {"http": {"method": method, "path": path, "headers": {}}},
}}

test_frontend_reads_backend_api if {
	case := req(authz.frontend, authz.backend, "GET", "/api/items")
	authz.allow with input as case
}

test_frontend_cannot_write_backend_api if {
	case := req(authz.frontend, authz.backend, "DELETE", "/api/items")
	not authz.allow with input as case
}

test_frontend_cannot_reach_database if {
	case := req(authz.frontend, authz.database, "GET", "/query")
	not authz.allow with input as case
}

test_backend_queries_database if {
	case := req(authz.backend, authz.database, "POST", "/query")
	authz.allow with input as case
}

test_unauthenticated_caller_is_denied if {
	case := req("", authz.backend, "GET", "/api/items")
	not authz.allow with input as case
}

test_health_is_open_to_the_trust_domain if {
	case := req(authz.database, authz.frontend, "GET", "/healthz")
	authz.allow with input as case
}
