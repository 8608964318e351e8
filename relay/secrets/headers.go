package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrMalformedHeaders means a subscription's headers column is not in the format HeaderValue
// describes.
var ErrMalformedHeaders = errors.New("stored headers are malformed")

// HeaderValue is one value of a subscription's custom headers as stored: the headers column
// is a JSON object from header name (in clear) to a HeaderValue. In JSON a HeaderValue is
// either a string, the value in clear (written with no encryption key configured, or before
// values were sealed), or an object {"sealed": "enc:v1:<key id>:<base64>"}, the value sealed
// by a Box. A clear value is never opened, so a clear value that happens to start with "enc:"
// stays what it is.
type HeaderValue struct {
	// Plain is the value in clear; empty when Sealed is set.
	Plain string
	// Sealed is the value sealed by a Box, or "" for a value in clear.
	Sealed string
}

// sealedHeader is the JSON form of a sealed HeaderValue.
type sealedHeader struct {
	Sealed string `json:"sealed"`
}

// IsSealed reports whether v is stored sealed.
func (v HeaderValue) IsSealed() bool { return v.Sealed != "" }

// MarshalJSON answers a JSON string for a clear value and {"sealed": "..."} for a sealed one.
func (v HeaderValue) MarshalJSON() ([]byte, error) {
	if v.IsSealed() {
		return json.Marshal(sealedHeader{Sealed: v.Sealed})
	}
	return json.Marshal(v.Plain)
}

// UnmarshalJSON reads either form, and refuses anything else: an object with another field,
// or without a non-empty "sealed" string.
func (v *HeaderValue) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		*v = HeaderValue{}
		return json.Unmarshal(b, &v.Plain)
	}
	if len(b) == 0 || b[0] != '{' {
		return fmt.Errorf("%w: a value is neither a string nor {\"sealed\": ...}", ErrMalformedHeaders)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s sealedHeader
	if err := dec.Decode(&s); err != nil || s.Sealed == "" {
		return fmt.Errorf("%w: a value is neither a string nor {\"sealed\": \"...\"}", ErrMalformedHeaders)
	}
	*v = HeaderValue{Sealed: s.Sealed}
	return nil
}

// SealHeaderValue answers how to store plain: sealed with seal, or in clear when seal
// answers its input unchanged (a Box without a key does: Box.Seal is the usual seal).
func SealHeaderValue(plain string, seal func(plain string) (string, error)) (HeaderValue, error) {
	stored, err := seal(plain)
	if err != nil {
		return HeaderValue{}, err
	}
	if stored == plain {
		return HeaderValue{Plain: plain}, nil
	}
	return HeaderValue{Sealed: stored}, nil
}

// Open answers the value in clear: Plain as it is, Sealed opened with open (Box.Open).
func (v HeaderValue) Open(open func(stored string) (string, error)) (string, error) {
	if !v.IsSealed() {
		return v.Plain, nil
	}
	return open(v.Sealed)
}

// DecodeHeaders reads a headers column. Empty input and JSON null are no headers.
func DecodeHeaders(raw []byte) (map[string]HeaderValue, error) {
	out := map[string]HeaderValue{}
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return out, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		if errors.Is(err, ErrMalformedHeaders) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: not a JSON object of header values", ErrMalformedHeaders)
	}
	return out, nil
}

// EncodeHeaders writes a headers column: names in clear, in sorted order, values as
// HeaderValue describes. nil is {}.
func EncodeHeaders(h map[string]HeaderValue) ([]byte, error) {
	if h == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(h)
}

// OpenHeaders turns a subscription's headers column into the headers to send, every value
// in clear: values stored in clear as they are, sealed ones opened with open (Box.Open).
// Errors name the header but never contain a value, so they are safe to log.
func OpenHeaders(raw []byte, open func(stored string) (string, error)) (map[string]string, error) {
	stored, err := DecodeHeaders(raw)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(stored))
	for name, v := range stored {
		plain, err := v.Open(open)
		if err != nil {
			return nil, fmt.Errorf("opening header %q: %w", name, err)
		}
		out[name] = plain
	}
	return out, nil
}
