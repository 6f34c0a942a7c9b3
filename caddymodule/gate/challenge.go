package gate

// withScope adds the scopes the gate needs to a 401 challenge: the MCP
// authorization specification (2025-11-25) has resource servers name
// them there (RFC 6750 §3 allows scope on any challenge), and MCP
// clients ask for exactly these rather than everything the protected
// resource metadata lists. The 403 insufficient_scope answer names them
// itself. scopes is validated configuration (no quotes, no
// backslashes), never request data.
func withScope(challenge, scopes string) string {
	if challenge == "" || scopes == "" {
		return challenge
	}
	return challenge + `, scope="` + scopes + `"`
}
