package api

// auditRoutes registers the audit-reading endpoints (owned by the audit work).
func (s *Server) auditRoutes() {}
