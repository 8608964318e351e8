package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// maxBodyBytes is the largest request body accepted.
const maxBodyBytes = 64 << 10

// readBody reads the body of a request that takes JSON. It answers nil for an empty body,
// which each route then accepts or refuses; a non-empty body must be declared
// application/json (415 otherwise) and fit in maxBodyBytes (413 otherwise).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength == 0 {
		return nil, nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return nil, errorf(http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "request body must be application/json")
	}
	tooLarge := errorf(http.StatusRequestEntityTooLarge, codeBodyTooLarge, "request body is larger than %d KiB", maxBodyBytes>>10)
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge
		}
		// The client went away or sent a broken chunked body: its fault, not ours.
		return nil, badJSON("could not read the request body")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, nil
	}
	return body, nil
}

// isJSON reports whether a Content-Type is application/json, in UTF-8 if a charset is given.
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// jsonObject is a request body split into its top-level fields, each still raw JSON. Keeping
// fields raw lets every field be decoded, and its errors named, on its own, and tells an
// absent field from an explicit null (which PATCH needs).
type jsonObject map[string]json.RawMessage

// decodeObject parses body as one JSON object whose keys are all in allowed (exact case,
// each at most once). Errors are 400 invalid_json or unknown_field.
func decodeObject(body []byte, allowed []string) (jsonObject, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badJSON("request body has data after the JSON value")
	}
	if raw[0] != '{' {
		return nil, badJSON("request body must be a JSON object")
	}

	obj := jsonObject{}
	dec = json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, syntaxError(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		key, _ := tok.(string) // inside an object, a token in key position is always a string
		if !slices.Contains(allowed, key) {
			return nil, errorf(http.StatusBadRequest, codeUnknownField, "unknown field %q", truncate(key))
		}
		if _, dup := obj[key]; dup {
			return nil, badJSON("field %q is given more than once", key)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, syntaxError(err)
		}
		obj[key] = v
	}
	return obj, nil
}

func syntaxError(err error) *apiError {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badJSON("request body is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return badJSON("request body is not valid JSON: unexpected end of input")
	}
	return badJSON("request body is not valid JSON")
}

// isNull reports whether a raw field is absent or JSON null.
func isNull(raw json.RawMessage) bool {
	return raw == nil || string(raw) == "null"
}

// field decodes obj[name] into a T. ok is false when the field is absent or null. A value of
// the wrong JSON type is 400 invalid_json naming the field and the type wanted (want, such
// as "a string").
func field[T any](obj jsonObject, name, want string) (v T, ok bool, err error) {
	raw := obj[name]
	if isNull(raw) {
		return v, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, false, badJSON("field %q must be %s", name, want)
	}
	return v, true, nil
}

// maxJSONDepth bounds the nesting of free-form objects (filter, metadata).
const maxJSONDepth = 32

// normalizeObject checks a free-form JSON object field (filter, metadata) and re-encodes it
// so that PostgreSQL's jsonb accepts it: it refuses what jsonb would reject with an error
// (U+0000 in a string or key, numbers outside its range) and nesting deeper than
// maxJSONDepth. Lone surrogates and invalid UTF-8 are replaced by U+FFFD as encoding/json
// does. It answers nil for an absent or null field.
func normalizeObject(obj jsonObject, name, code string) (json.RawMessage, error) {
	raw := obj[name]
	if isNull(raw) {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, badJSON("field %q must be a JSON object", name)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, badJSON("field %q is not valid JSON", name)
	}
	if msg := checkJSONValue(v, 1); msg != "" {
		return nil, invalid(code, "%s %s", name, msg)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, invalid(code, "%s cannot be encoded", name)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkJSONValue answers why v cannot be stored as jsonb, or "". depth counts the objects
// and arrays v is in, itself included.
func checkJSONValue(v any, depth int) string {
	switch v.(type) {
	case []any, map[string]any:
		if depth > maxJSONDepth {
			return "is nested deeper than " + strconv.Itoa(maxJSONDepth) + " levels"
		}
	}
	switch v := v.(type) {
	case string:
		if strings.ContainsRune(v, 0) {
			return "must not contain the character U+0000"
		}
	case json.Number:
		if !numberInRange(string(v)) {
			return "contains the number " + truncate(string(v)) + ", which is out of range"
		}
	case []any:
		for _, e := range v {
			if msg := checkJSONValue(e, depth+1); msg != "" {
				return msg
			}
		}
	case map[string]any:
		for k, e := range v {
			if strings.ContainsRune(k, 0) {
				return "must not contain the character U+0000"
			}
			if msg := checkJSONValue(e, depth+1); msg != "" {
				return msg
			}
		}
	}
	return ""
}

// numberInRange reports whether a JSON number is a finite float64 that does not underflow
// to zero: a range PostgreSQL's numeric holds with room to spare.
func numberInRange(n string) bool {
	f, err := strconv.ParseFloat(n, 64)
	if err != nil {
		return false
	}
	if f == 0 {
		mantissa, _, _ := strings.Cut(strings.ToLower(n), "e")
		return strings.Trim(mantissa, "-+0.") == ""
	}
	return true
}
