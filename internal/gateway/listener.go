package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"sync"
)

// The gateway terminates TLS itself and speaks HTTP/1.1 only, so that it
// can see each request head as the client sent it. net/http resolves a
// request carrying both Content-Length and Transfer-Encoding by dropping
// Content-Length (RFC 9112 §6.3) before a handler can tell; the gateway
// refuses such a request instead (it is a request-smuggling attempt or a
// broken client). frameConn follows the HTTP/1.1 framing of the bytes the
// server reads and notes, for each request head, whether it was ambiguous;
// the handler looks the note up and compares its request line with the one
// net/http parsed, refusing on any disagreement (fail closed).

// tlsListener accepts TLS connections and wraps each in a frameConn.
type tlsListener struct {
	net.Listener
	cfg     *tls.Config
	maxHead int
}

func newTLSListener(ln net.Listener, cfg *tls.Config, maxHeaderBytes int) net.Listener {
	c := cfg.Clone()
	c.NextProtos = []string{"http/1.1"}
	return &tlsListener{Listener: ln, cfg: c, maxHead: maxHeaderBytes + 4096}
}

func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// the handshake runs on the first Read, in the connection's goroutine,
	// under the server's read-header deadline
	return &frameConn{Conn: tls.Server(c, l.cfg), maxHead: l.maxHead}, nil
}

type connKey struct{}

// connContext stores the frameConn for the handler.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*frameConn); ok {
		return context.WithValue(ctx, connKey{}, fc)
	}
	return ctx
}

// head is what frameConn noted about one request head.
type head struct {
	method, target string
	// ambiguous: Content-Length together with Transfer-Encoding.
	ambiguous bool
	// repeatedLength: more than one Content-Length line (net/http merges
	// equal ones into one before the handler sees them).
	repeatedLength bool
}

// maxQueuedHeads bounds pipelined request heads noted but not yet served
// (a client sending more in one go than a few TLS records hold is refused).
const maxQueuedHeads = 128

type frameState uint8

const (
	stHead      frameState = iota // reading a request head
	stBody                        // remaining bytes of a Content-Length body
	stChunkSize                   // a chunk-size line
	stChunkData                   // remaining bytes of a chunk
	stChunkCR                     // the CR after chunk data
	stChunkLF                     // the LF after chunk data
	stTrailer                     // trailer lines after the last chunk
	stBroken                      // lost track: every later request is refused
)

// frameConn is a server connection that follows HTTP/1.1 request framing.
type frameConn struct {
	net.Conn
	maxHead int

	mu    sync.Mutex
	st    frameState
	buf   []byte // the current head, chunk-size line or trailer line
	left  int64  // bytes left in stBody / stChunkData
	heads []head
	// lead is how many CR or LF bytes may still be skipped before the
	// next head: net/http discards up to 4 after a POST (RFC 9112 §2.2)
	lead int
}

func (c *frameConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.scan(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// next returns the note of the oldest request head not yet served; ok is
// false when there is none (frameConn lost track).
func (c *frameConn) next() (head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.heads) == 0 {
		return head{}, false
	}
	h := c.heads[0]
	if len(c.heads) == 1 {
		c.heads = c.heads[:0] // reuse the array: most connections hold one head at a time
	} else {
		c.heads = c.heads[1:]
	}
	return h, true
}

func (c *frameConn) broken() {
	c.st = stBroken
	c.buf = nil
}

func (c *frameConn) scan(p []byte) {
	for len(p) > 0 {
		switch c.st {
		case stBroken:
			return
		case stHead:
			if c.lead > 0 && len(c.buf) == 0 {
				for c.lead > 0 && len(p) > 0 && (p[0] == '\r' || p[0] == '\n') {
					p, c.lead = p[1:], c.lead-1
				}
				if len(p) == 0 {
					return
				}
				c.lead = 0
			}
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if len(c.buf)+len(p) > c.maxHead {
					c.broken()
					return
				}
				c.buf = append(c.buf, p...)
				return
			}
			if len(c.buf)+i+1 > c.maxHead {
				c.broken()
				return
			}
			c.buf = append(c.buf, p[:i+1]...)
			p = p[i+1:]
			if endOfHead(c.buf) {
				c.headDone()
			}
		case stBody, stChunkData:
			n := int64(len(p))
			if n > c.left {
				n = c.left
			}
			c.left -= n
			p = p[n:]
			if c.left == 0 {
				if c.st == stBody {
					c.st = stHead
				} else {
					c.st = stChunkCR
				}
			}
		case stChunkCR:
			if p[0] != '\r' {
				c.broken()
				return
			}
			p = p[1:]
			c.st = stChunkLF
		case stChunkLF:
			if p[0] != '\n' {
				c.broken()
				return
			}
			p = p[1:]
			c.st = stChunkSize
		case stChunkSize, stTrailer:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if len(c.buf)+len(p) > 4096 {
					c.broken()
					return
				}
				c.buf = append(c.buf, p...)
				return
			}
			if len(c.buf)+i+1 > 4096 {
				c.broken()
				return
			}
			c.buf = append(c.buf, p[:i+1]...)
			p = p[i+1:]
			line := c.buf
			c.buf = c.buf[:0]
			if c.st == stTrailer {
				if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
					c.st = stHead
				}
				continue
			}
			size, ok := chunkSize(line)
			switch {
			case !ok:
				c.broken()
				return
			case size == 0:
				c.st = stTrailer
			default:
				c.st, c.left = stChunkData, size
			}
		}
	}
}

// endOfHead reports whether buf, ending in "\n", ends with an empty line
// after at least the request line.
func endOfHead(buf []byte) bool {
	if bytes.HasSuffix(buf, []byte("\n\n")) || bytes.HasSuffix(buf, []byte("\n\r\n")) {
		return true
	}
	return false
}

// headDone notes the head in c.buf and moves to its body.
func (c *frameConn) headDone() {
	buf := c.buf
	c.buf = c.buf[:0]
	first, fields, _ := bytes.Cut(buf, []byte("\n"))
	reqLine := strings.TrimSuffix(string(first), "\r")
	method, rest, ok1 := strings.Cut(reqLine, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		c.broken() // net/http refuses it and closes the connection
		return
	}
	var cls []string
	var te []string
	for len(fields) > 0 {
		var l []byte
		l, fields, _ = bytes.Cut(fields, []byte("\n"))
		l = bytes.TrimSuffix(l, []byte("\r"))
		if len(l) == 0 {
			continue
		}
		if l[0] == ' ' || l[0] == '\t' {
			// obs-fold (a line continuing the previous field): refused, as
			// RFC 9112 §5.2 allows; joining the lines cost quadratic time
			// on heads of thousands of them, before any authentication
			c.broken()
			return
		}
		name, value, _ := bytes.Cut(l, []byte(":"))
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			cls = append(cls, string(bytes.Trim(value, " \t")))
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			te = append(te, string(bytes.Trim(value, " \t")))
		}
	}
	if len(c.heads) >= maxQueuedHeads {
		c.broken()
		return
	}
	c.heads = append(c.heads, head{method: method, target: target, ambiguous: len(cls) > 0 && len(te) > 0, repeatedLength: len(cls) > 1})
	if method == "POST" {
		c.lead = 4
	}
	// the body as net/http frames it: Transfer-Encoding (HTTP/1.1 and up:
	// exactly one, "chunked"), else Content-Length, else none
	if len(te) > 0 && proto != "HTTP/1.0" {
		if len(te) != 1 || !strings.EqualFold(te[0], "chunked") {
			c.broken() // net/http answers 501 and closes
			return
		}
		c.st = stChunkSize
		return
	}
	if len(cls) > 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(cls[0]), 10, 64)
		if err != nil || n < 0 || cls[0] == "" || cls[0][0] == '+' {
			c.broken()
			return
		}
		for _, o := range cls[1:] {
			if strings.TrimSpace(o) != strings.TrimSpace(cls[0]) {
				c.broken() // net/http refuses differing lengths
				return
			}
		}
		if n > 0 {
			c.st, c.left = stBody, n
			return
		}
	}
	c.st = stHead
}

// chunkSize parses a chunk-size line as net/http does: CRLF-terminated,
// no other CR, trailing blanks then extensions after ";" ignored, at most
// 16 hex digits.
func chunkSize(line []byte) (int64, bool) {
	if len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
		return 0, false
	}
	line = bytes.TrimRight(line[:len(line)-2], " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range line {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | uint64(d)
	}
	if n > 1<<62 {
		return 0, false
	}
	return int64(n), true
}
