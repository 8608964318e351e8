package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/referralloop/outbox-relay/outbox"
)

// The operator console's sign-in: the API token, once, for a session cookie.
//
// The cookie holds a random session ID and an HMAC of it under a key made from the token:
// a cookie nobody signed is refused without a query, and changing the token ends every
// session. The database holds the ID's SHA-256 and the expiry (console_sessions), so that
// sign-out ends the session on every relay sharing the schema, not only in this browser.
//
// Failed sign-ins are slowed per client address: after a few, each answer waits longer
// (up to maxFailDelay), which costs a guesser far more than a person who mistyped.

const (
	cookieName      = "outbox_relay_console"
	sessionLifetime = 12 * time.Hour
	freeFailures    = 3               // failures per address answered at once
	maxFailDelay    = 8 * time.Second // the longest a failed sign-in waits
	failMemory      = 15 * time.Minute
)

type sessions struct {
	db    *sqlx.DB
	q     struct{ valid, create, delete string }
	path  string   // the cookie's path: the console's
	open  bool     // no token: everyone is the operator
	token [32]byte // SHA-256 of the token
	key   []byte   // the cookie MAC key

	mu       sync.Mutex
	failures map[string]failure // by client address
}

type failure struct {
	n    int
	last time.Time
}

func newSessions(db *sqlx.DB, schema, base, token string) *sessions {
	s := &sessions{db: db, path: base + "/", open: token == "", token: sha256.Sum256([]byte(token)), failures: map[string]failure{}}
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("outbox-relay console session cookie"))
	s.key = mac.Sum(nil)
	s.q.valid = outbox.Qualify(schema, sqlSessionValid)
	s.q.create = outbox.Qualify(schema, sqlSessionCreate)
	s.q.delete = outbox.Qualify(schema, sqlSessionDelete)
	return s
}

// sign answers the cookie value for session ID id: id.mac, both base64url.
func (s *sessions) sign(id []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write(id)
	return base64.RawURLEncoding.EncodeToString(id) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// idOf answers the session ID of a cookie value, or nil when the MAC does not match.
func (s *sessions) idOf(v string) []byte {
	a, b, ok := strings.Cut(v, ".")
	if !ok {
		return nil
	}
	id, err1 := base64.RawURLEncoding.DecodeString(a)
	sum, err2 := base64.RawURLEncoding.DecodeString(b)
	if err1 != nil || err2 != nil || len(id) != 32 {
		return nil
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write(id)
	if !hmac.Equal(sum, mac.Sum(nil)) {
		return nil
	}
	return id
}

// valid reports whether r carries a live session.
func (s *sessions) valid(r *http.Request) (bool, error) {
	if s.open {
		return true, nil
	}
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return false, nil
	}
	id := s.idOf(ck.Value)
	if id == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
	defer cancel()
	sum := sha256.Sum256(id)
	var ok bool
	err = s.db.QueryRowContext(ctx, s.q.valid, sum[:]).Scan(&ok)
	return ok, err
}

// tokenMatches compares a token sent with the configured one, in the same time whatever it is.
func (s *sessions) tokenMatches(token string) bool {
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], s.token[:]) == 1
}

// start makes a session and answers its cookie.
func (s *sessions) start(ctx context.Context, secure bool) (*http.Cookie, error) {
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	sum := sha256.Sum256(id)
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, s.q.create, sum[:], int64(sessionLifetime/time.Second)); err != nil {
		return nil, err
	}
	return s.cookie(s.sign(id), int(sessionLifetime/time.Second), secure), nil
}

// end deletes r's session, if it has one, and answers the cookie that clears it.
func (s *sessions) end(r *http.Request, secure bool) (*http.Cookie, error) {
	if ck, err := r.Cookie(cookieName); err == nil {
		if id := s.idOf(ck.Value); id != nil {
			sum := sha256.Sum256(id)
			ctx, cancel := context.WithTimeout(r.Context(), dbTimeout)
			defer cancel()
			if _, err := s.db.ExecContext(ctx, s.q.delete, sum[:]); err != nil {
				return nil, err
			}
		}
	}
	return s.cookie("", -1, secure), nil
}

// cookie is the session cookie: only for this path, never to scripts, never sent with
// requests from another site, and over TLS only when the console is reached over TLS.
func (s *sessions) cookie(value string, maxAge int, secure bool) *http.Cookie {
	return &http.Cookie{Name: cookieName, Value: value, Path: s.path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: secure}
}

// overTLS reports whether the browser reached the console over TLS: directly, or through a
// proxy that says so.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// failDelay records a failed sign-in from r's address and answers how long its answer waits.
func (s *sessions) failDelay(r *http.Request, now time.Time) time.Duration {
	addr := clientAddr(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, f := range s.failures { // the map holds only recent guessers
		if now.Sub(f.last) > failMemory {
			delete(s.failures, a)
		}
	}
	f := s.failures[addr]
	f.n++
	f.last = now
	s.failures[addr] = f
	if f.n <= freeFailures {
		return 0
	}
	return min(maxFailDelay, time.Duration(1<<min(f.n-freeFailures-1, 10))*250*time.Millisecond)
}

// succeeded forgets r's address's failures.
func (s *sessions) succeeded(r *http.Request) {
	s.mu.Lock()
	delete(s.failures, clientAddr(r))
	s.mu.Unlock()
}

// clientAddr is the address a request came from, without its port. X-Forwarded-For is not
// read: anyone may set it, and a guesser would give a new one each time.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// signInPage shows the sign-in form.
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if ok, _ := c.sessions.valid(r); ok {
		http.Redirect(w, r, c.base+"/", http.StatusSeeOther)
		return
	}
	c.render(w, r, http.StatusOK, "signin", pageData{Title: "Sign in"})
}

// signIn exchanges the token for a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	token := r.PostFormValue("token")
	if !c.sessions.open && !c.sessions.tokenMatches(token) {
		wait := c.sessions.failDelay(r, time.Now())
		c.log.Warn().Str("remote", clientAddr(r)).Dur("answer_delay", wait).Msg("console sign-in refused: wrong token")
		select {
		case <-time.After(wait):
		case <-r.Context().Done():
			return
		}
		c.render(w, r, http.StatusUnauthorized, "signin", pageData{Title: "Sign in", Error: "That token is not the relay's API token (RELAY_API_TOKEN)."})
		return
	}
	c.sessions.succeeded(r)
	ck, err := c.sessions.start(r.Context(), overTLS(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.SetCookie(w, ck)
	c.log.Info().Str("remote", clientAddr(r)).Msg("console sign-in")
	http.Redirect(w, r, c.base+"/", http.StatusSeeOther)
}

// signOut ends the session.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	ck, err := c.sessions.end(r, overTLS(r))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	http.SetCookie(w, ck)
	http.Redirect(w, r, c.base+"/sign-in", http.StatusSeeOther)
}
