// Package kmsfake is a local stand-in for the AWS KMS HTTP API, enough of
// it for the vault's awskms provider to be tested without a cloud: the
// JSON 1.1 protocol (POST /, X-Amz-Target: TrentService.Encrypt or
// TrentService.Decrypt, Content-Type application/x-amz-json-1.1) with
// symmetric keys, encryption contexts, and KMS's error shapes
// (IncorrectKeyException, InvalidCiphertextException, NotFoundException,
// AccessDeniedException).
//
// Requests must carry a SigV4 Authorization header for the service "kms"
// (its presence and shape are checked, not the signature). Ciphertext
// blobs are "fake" | key id length (1) | key id | nonce (12) | AES-GCM
// sealed plaintext, with the key id and the canonical encryption context
// as additional data — opaque to the client, as KMS's are.
package kmsfake

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Server is a fake KMS. Its URL is the endpoint to configure.
type Server struct {
	*httptest.Server

	mu      sync.Mutex
	keys    map[string]cipher.AEAD // key id -> key
	aliases map[string]string      // "alias/x" -> key id
	down    bool

	// Encrypts and Decrypts count successful calls.
	Encrypts, Decrypts atomic.Int64
}

// New starts a fake KMS (plain HTTP on loopback) holding a fresh random
// key for each id. Close it when done.
func New(keyIDs ...string) *Server {
	s := &Server{keys: map[string]cipher.AEAD{}, aliases: map[string]string{}}
	for _, id := range keyIDs {
		s.AddKey(id)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// AddKey creates a key with this id.
func (s *Server) AddKey(id string) {
	k := make([]byte, 32)
	rand.Read(k)
	b, _ := aes.NewCipher(k)
	g, _ := cipher.NewGCM(b)
	s.mu.Lock()
	s.keys[id] = g
	s.mu.Unlock()
}

// Alias makes "alias/NAME" refer to key id.
func (s *Server) Alias(name, id string) {
	s.mu.Lock()
	s.aliases["alias/"+name] = id
	s.mu.Unlock()
}

// SetDown makes every call fail with a 503 (true) or work again (false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// ARN returns the ARN the fake reports for key id.
func ARN(id string) string { return "arn:aws:kms:us-east-1:111122223333:key/" + id }

type request struct {
	KeyID             string            `json:"KeyId"`
	Plaintext         []byte            `json:"Plaintext"`
	CiphertextBlob    []byte            `json:"CiphertextBlob"`
	EncryptionContext map[string]string `json:"EncryptionContext"`
}

func fail(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(v)
}

// resolve turns a key id, ARN or alias into a key id.
func (s *Server) resolve(ref string) (string, cipher.AEAD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.aliases[ref]; ok {
		ref = id
	}
	if i := strings.LastIndex(ref, ":key/"); i >= 0 {
		ref = ref[i+len(":key/"):]
	}
	return ref, s.keys[ref]
}

// contextAD is the canonical form of an encryption context.
func contextAD(id string, ec map[string]string) []byte {
	ad := []byte(id)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range ec {
			if !yield(k) {
				return
			}
		}
	}) {
		ad = append(ad, 0)
		ad = append(ad, k...)
		ad = append(ad, 0)
		ad = append(ad, ec[k]...)
	}
	return ad
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	s.mu.Unlock()
	if down {
		fail(w, http.StatusServiceUnavailable, "KMSInternalException", "the fake KMS is down")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		fail(w, http.StatusNotFound, "UnknownOperationException", "POST / only")
		return
	}
	auth := r.Header.Get("Authorization")
	if !strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential=") || !strings.Contains(auth, "/kms/aws4_request") ||
		!strings.Contains(auth, "Signature=") || r.Header.Get("X-Amz-Date") == "" {
		fail(w, http.StatusBadRequest, "MissingAuthenticationTokenException", "no SigV4 signature for kms")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		fail(w, http.StatusBadRequest, "SerializationException", "Content-Type must be application/x-amz-json-1.1")
		return
	}
	var req request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "SerializationException", "malformed JSON")
		return
	}
	switch r.Header.Get("X-Amz-Target") {
	case "TrentService.Encrypt":
		s.encrypt(w, req)
	case "TrentService.Decrypt":
		s.decrypt(w, req)
	default:
		fail(w, http.StatusBadRequest, "UnknownOperationException", "only Encrypt and Decrypt")
	}
}

func (s *Server) encrypt(w http.ResponseWriter, req request) {
	id, g := s.resolve(req.KeyID)
	if g == nil {
		fail(w, http.StatusBadRequest, "NotFoundException", "key not found")
		return
	}
	if len(req.Plaintext) == 0 || len(req.Plaintext) > 4096 {
		fail(w, http.StatusBadRequest, "ValidationException", "plaintext must be 1 to 4096 bytes")
		return
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	blob := append([]byte("fake"), byte(len(id)))
	blob = append(blob, id...)
	blob = append(blob, nonce...)
	blob = g.Seal(blob, nonce, req.Plaintext, contextAD(id, req.EncryptionContext))
	s.Encrypts.Add(1)
	reply(w, map[string]any{"CiphertextBlob": blob, "KeyId": ARN(id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
}

func (s *Server) decrypt(w http.ResponseWriter, req request) {
	b := req.CiphertextBlob
	if len(b) < 5 || string(b[:4]) != "fake" || len(b) < 5+int(b[4])+12+16 {
		fail(w, http.StatusBadRequest, "InvalidCiphertextException", "")
		return
	}
	id := string(b[5 : 5+int(b[4])])
	rest := b[5+int(b[4]):]
	if req.KeyID != "" {
		if want, _ := s.resolve(req.KeyID); want != id {
			fail(w, http.StatusBadRequest, "IncorrectKeyException", "the key ID in the request does not identify the key that encrypted the ciphertext")
			return
		}
	}
	_, g := s.resolve(id)
	if g == nil {
		fail(w, http.StatusBadRequest, "NotFoundException", "key not found")
		return
	}
	pt, err := g.Open(nil, rest[:12], rest[12:], contextAD(id, req.EncryptionContext))
	if err != nil {
		fail(w, http.StatusBadRequest, "InvalidCiphertextException", "")
		return
	}
	s.Decrypts.Add(1)
	reply(w, map[string]any{"Plaintext": pt, "KeyId": ARN(id), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
}
