package api

import (
	"crypto/sha256"
	_ "embed" // openapi.json
	"encoding/hex"
	"net/http"
	"strings"
)

// OpenAPI is relay/api/openapi.json, the document GET /v1/openapi.json serves.
//
//go:embed openapi.json
var OpenAPI []byte

// openAPIETag is a strong ETag of OpenAPI: it changes exactly when the document does.
var openAPIETag = func() string {
	sum := sha256.Sum256(OpenAPI)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}()

// getOpenAPI is GET /v1/openapi.json: the API's description, the same for every caller. It
// needs a caller like every route (the operator's token, or a tenant's forward auth in
// reverse-proxy mode) but no scope: it holds no data, and tenants who integrate with the
// API need it as much as the operator.
func (a *API) getOpenAPI(w http.ResponseWriter, r *http.Request, _ scope) error {
	h := w.Header()
	h.Set("ETag", openAPIETag)
	h.Set("Cache-Control", "no-cache") // cache, but ask again: a new relay may answer another
	h.Set("X-Content-Type-Options", "nosniff")
	if etagMatches(r.Header.Get("If-None-Match"), openAPIETag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(OpenAPI)
	return nil
}

// etagMatches reports whether an If-None-Match header value names etag (or is *); weak
// comparison, as RFC 9110 asks for If-None-Match.
func etagMatches(header, etag string) bool {
	for _, v := range strings.Split(header, ",") {
		v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
		if v == "*" || v == etag {
			return true
		}
	}
	return false
}
