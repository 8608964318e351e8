package signature_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/referralloop/outbox-relay/relay/signature"
)

// FuzzVerify feeds arbitrary header values and bodies to Verify. Verify parses input from the
// network before anything is authenticated, so it must never panic, and whatever Sign makes
// for the same message must verify.
func FuzzVerify(f *testing.F) {
	f.Add(vectorID, strconv.FormatInt(vectorTimestamp, 10), vectorSignature, []byte(vectorBody))
	f.Add("", "", "", []byte(nil))
	f.Add("msg_1", "-9223372036854775808", "v1,", []byte("{}"))
	f.Add("msg_1", "9223372036854775807", "v1,"+vectorSignature[3:]+" v2,x", []byte("{}"))
	f.Add("msg 1", "+1614265330", "v1,==== v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", []byte{0xff, 0})
	f.Add("msg_1", "0x10", "  \t v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\t", []byte("x"))

	key := mustKey(f, vectorSecret)
	v, err := signature.NewVerifier(vectorSecret)
	require.NoError(f, err)
	v.Now = fixedClock(vectorTimestamp)

	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(signature.HeaderID, id)
		h.Set(signature.HeaderTimestamp, ts)
		h.Set(signature.HeaderSignature, sig)
		if err := v.Verify(h, body); err == nil {
			// Accepting is only right if the request really carries our signature.
			parsed, perr := strconv.ParseInt(ts, 10, 64)
			require.NoError(t, perr)
			require.Contains(t, sig, signature.Sign(key, id, parsed, body))
		}

		// The same id and body, signed now, must verify whatever they contain.
		if id == "" {
			return
		}
		h.Set(signature.HeaderTimestamp, strconv.FormatInt(vectorTimestamp, 10))
		h.Set(signature.HeaderSignature, sig+" "+signature.Sign(key, id, vectorTimestamp, body))
		require.NoError(t, v.Verify(h, body))
	})
}
