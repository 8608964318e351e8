package api

import (
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"

	"github.com/referralloop/outbox-relay/relay/ids"
)

const (
	defaultLimit = 50
	maxLimit     = 500
)

// Cursor kinds: a cursor of one list is refused by another.
const (
	cursorSubscriptions = "s"
	cursorDeliveries    = "d"
	cursorEvents        = "e"
)

// sealedCursors maps the kinds whose positions are row ids that count the installation's
// deliveries or events to their ids tag: their cursors carry the position encrypted
// (ids.Deliveries.SealCursor), so that a cursor shows no more than a delivery ID does.
var sealedCursors = map[string]uint64{cursorDeliveries: ids.CursorDeliveries, cursorEvents: ids.CursorEvents}

// list is the shape of every list answer. Data is never null.
type list[T any] struct {
	Data       []T     `json:"data"`
	NextCursor *string `json:"next_cursor"`
}

// page is a parsed ?limit= and ?cursor=.
type page struct {
	limit int
	// before is the position (seq or id) of the last row of the previous page; lists run newest
	// first, so this page holds rows strictly before it. Zero on the first page.
	before int64
}

// beforeParam is page.before as a query parameter: NULL on the first page.
func (p page) beforeParam() any {
	if p.before == 0 {
		return nil
	}
	return p.before
}

// parsePage reads ?limit= (default 50, 1 to 500) and ?cursor= (opaque, from next_cursor of a
// list of the same kind). An empty value counts as absent.
func (a *API) parsePage(q url.Values, kind string) (page, error) {
	p := page{limit: defaultLimit}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return page{}, invalid(codeInvalidLimit, "limit must be a whole number from 1 to %d", maxLimit)
		}
		p.limit = n
	}
	if s := q.Get("cursor"); s != "" {
		before, ok := a.decodeCursor(s, kind)
		if !ok {
			return page{}, invalid(codeInvalidCursor, "cursor is not valid here; pass next_cursor from the previous page unchanged")
		}
		p.before = before
	}
	return p, nil
}

// encodeCursor makes the opaque cursor that follows position pos: base64url of "kind:pos",
// pos sealed for the kinds in sealedCursors.
func (a *API) encodeCursor(kind string, pos int64) string {
	text := strconv.FormatInt(pos, 10)
	if tag, ok := sealedCursors[kind]; ok {
		text = a.ids.SealCursor(tag, pos)
	}
	return base64.RawURLEncoding.EncodeToString([]byte(kind + ":" + text))
}

func (a *API) decodeCursor(s, kind string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	k, num, ok := strings.Cut(string(b), ":")
	if !ok || k != kind {
		return 0, false
	}
	if tag, sealed := sealedCursors[kind]; sealed {
		return a.ids.OpenCursor(tag, num)
	}
	pos, err := strconv.ParseInt(num, 10, 64)
	if err != nil || pos <= 0 || strconv.FormatInt(pos, 10) != num {
		return 0, false
	}
	return pos, true
}

// paginate cuts rows, fetched with LIMIT limit+1, to one page and answers the next cursor:
// nil when this is the last page.
func paginate[T any](a *API, rows []T, limit int, kind string, pos func(T) int64) ([]T, *string) {
	if len(rows) <= limit {
		return rows, nil
	}
	rows = rows[:limit]
	c := a.encodeCursor(kind, pos(rows[limit-1]))
	return rows, &c
}
