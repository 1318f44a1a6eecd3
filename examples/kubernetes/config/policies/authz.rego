# Authorization for the sample mesh. Input follows OPA-Envoy's shape:
#   input.attributes.source.principal       the caller's verified SPIFFE ID (absent if none)
#   input.attributes.destination.principal  this workload's SPIFFE ID
#   input.attributes.request.http.{method,path,headers,host,scheme}
package envoy.authz

import rego.v1

default allow := false

frontend := "spiffe://example.org/ns/demo/sa/frontend"

backend := "spiffe://example.org/ns/demo/sa/backend"

database := "spiffe://example.org/ns/demo/sa/database"

source := input.attributes.source.principal

destination := input.attributes.destination.principal

method := input.attributes.request.http.method

path := input.attributes.request.http.path

# The frontend may read the backend's API.
allow if {
	destination == backend
	source == frontend
	method in {"GET", "HEAD"}
	startswith(path, "/api/")
}

# The backend may query the database.
allow if {
	destination == database
	source == backend
	method in {"GET", "POST"}
	startswith(path, "/query")
}

# Any workload of the trust domain may check health.
allow if {
	startswith(source, "spiffe://example.org/")
	method == "GET"
	path == "/healthz"
}
