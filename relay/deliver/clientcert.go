package deliver

import (
	"crypto/sha256"
	"fmt"
	"net/http"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/lib/pq"

	"github.com/referralloop/outbox-relay/relay/secrets"
)

// Client certificates (mTLS).
//
// The claim functions answer what every delivery needs and nothing about client
// certificates: changing their result would mean replacing eight SQL functions and every
// scan of them for a column most subscriptions leave NULL. Instead the deliverer looks up
// the certificates of the subscriptions it claims for, by id, in one query per claim, and
// only for subscriptions it has not looked at within certRecheck; a subscription without a
// certificate costs that query once per certRecheck and nothing else, and its requests go
// through the shared client as before. A subscription with one gets a client of its own
// (ClientWithCertificate: the same guard, proxy and roots), kept in an LRU keyed by
// subscription id and a hash of the stored certificate and key, so a changed certificate
// makes a new client and the old one ages out. A PATCH of the certificate takes effect at
// the next look, within certRecheck.
//
// A key that no configured key opens blocks the subscription exactly as an unopenable
// signing secret does (job.keyProblem): nothing is sent without the certificate.

// certRecheck is how long a subscription's certificate, or its having none, is trusted
// before the deliverer looks again.
const certRecheck = 15 * time.Second

// maxCertClients bounds the per-certificate clients kept, each with its own connections.
const maxCertClients = 256

// selectClientCerts: $1 the subscription ids; only those with a certificate answer.
const selectClientCerts = `
SELECT id, client_cert, client_key FROM {{schema}}.subscriptions
WHERE id = ANY($1) AND client_cert IS NOT NULL`

// certEntry is what the deliverer knows of one subscription's certificate.
type certEntry struct {
	checkedAt time.Time
	hash      [sha256.Size]byte // of the stored chain and key; zero for none
	client    *http.Client      // nil: the shared client
	err       error             // the certificate cannot be used as stored
}

// certClients keeps certEntry per subscription and the clients made for certificates.
type certClients struct {
	mu      sync.Mutex
	entries map[string]*certEntry
	clients *lru.Cache[string, *http.Client]
}

func newCertClients() *certClients {
	c, _ := lru.NewWithEvict(maxCertClients, func(_ string, cl *http.Client) { cl.CloseIdleConnections() })
	return &certClients{entries: map[string]*certEntry{}, clients: c}
}

// resolveCertificates sets the client of each job whose subscription has a client
// certificate, or its keyProblem when the certificate cannot be used. It answers the jobs
// whose subscription could not be looked up (the database is away): they must not go out
// without a certificate they may need, so the caller gives them back.
func (d *Deliverer) resolveCertificates(js []*job) (unknown []*job) {
	cc := d.certs
	now := time.Now()
	var stale []string
	cc.mu.Lock()
	seen := map[string]bool{}
	for _, j := range js {
		if seen[j.subscriptionID] {
			continue
		}
		seen[j.subscriptionID] = true
		if e := cc.entries[j.subscriptionID]; e == nil || now.Sub(e.checkedAt) > certRecheck {
			stale = append(stale, j.subscriptionID)
		}
	}
	cc.mu.Unlock()
	if len(stale) > 0 {
		if err := d.lookUpCertificates(stale, now); err != nil {
			d.log.Warn().Err(err).Msg("looking up client certificates")
		}
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, j := range js {
		e := cc.entries[j.subscriptionID]
		switch {
		case e == nil:
			unknown = append(unknown, j)
		case e.err != nil && j.keyProblem == nil:
			j.keyProblem = e.err
		default:
			j.client = e.client
		}
	}
	return unknown
}

// lookUpCertificates reads the certificates of ids and updates their entries; one that
// answers no row has none. On error the entries stay as they were.
func (d *Deliverer) lookUpCertificates(ids []string, now time.Time) error {
	ctx, cancel := d.dbContext()
	defer cancel()
	rows, err := d.db.QueryContext(ctx, d.certsQ, pq.StringArray(ids))
	if err != nil {
		return err
	}
	defer rows.Close()
	found := map[string][2]string{}
	for rows.Next() {
		var id, chain, key string
		if err := rows.Scan(&id, &chain, &key); err != nil {
			return err
		}
		found[id] = [2]string{chain, key}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	cc := d.certs
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for _, id := range ids {
		stored, ok := found[id]
		if !ok {
			cc.entries[id] = &certEntry{checkedAt: now}
			continue
		}
		hash := sha256.Sum256([]byte(stored[0] + "\x00" + stored[1]))
		if e := cc.entries[id]; e != nil && e.hash == hash {
			// Unchanged: the same client, or the same problem (the keys that could open
			// it change only with a restart, which empties this cache).
			e.checkedAt = now
			continue
		}
		e := &certEntry{checkedAt: now, hash: hash}
		e.client, e.err = d.certClient(id, hash, stored[0], stored[1])
		cc.entries[id] = e
	}
	return nil
}

// certClient answers the client that presents the stored certificate, from the LRU or
// made now. Called with cc.mu held.
func (d *Deliverer) certClient(id string, hash [sha256.Size]byte, chain, storedKey string) (*http.Client, error) {
	key := id + ":" + fmt.Sprintf("%x", hash[:8])
	if cl, ok := d.certs.clients.Get(key); ok {
		return cl, nil
	}
	cert, err := secrets.ClientCertificate(chain, storedKey, d.cfg.OpenSecret)
	if err != nil {
		return nil, err
	}
	cl, err := d.cfg.ClientWithCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("client certificate: making its client: %w", err)
	}
	d.certs.clients.Add(key, cl)
	return cl, nil
}
