package gateway
import ("testing";"context";"net/http";"io";"sync";"time";"path/filepath";"os";"fmt";"github.com/phigate/phigate/internal/authority")
type nopRec struct{}
func (nopRec) Record(context.Context, *Event) error { return nil }
func TestZZCmp(t *testing.T){
	if os.Getenv("ZZ")=="" { t.Skip() }
	fx := newFixture(t)
	fr, _ := NewFileRecorder(filepath.Join(t.TempDir(), "a.jsonl"))
	s, _ := fx.token(t, authority.Spec{Scopes: []string{"billing:read"}})
	tr := &http.Transport{TLSClientConfig: fx.tlsCfg, MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}
	c := &http.Client{Transport: tr}
	run := func(conc int, d time.Duration) float64 {
		var n int64; var mu sync.Mutex; var wg sync.WaitGroup
		st := time.Now()
		for i:=0;i<conc;i++{ wg.Go(func(){ for time.Since(st) < d { req,_ := http.NewRequest("GET","https://"+fx.addr+"/billing/invoices/1",nil); req.Header.Set("Authorization","Bearer "+s); r, err := c.Do(req); if err!=nil {continue}; io.Copy(io.Discard, r.Body); r.Body.Close(); mu.Lock(); n++; mu.Unlock() } }) }
		wg.Wait()
		return float64(n)/time.Since(st).Seconds()
	}
	for _, conc := range []int{1, 4, 16, 64} {
		var a, b float64
		for i := 0; i < 3; i++ {
			fx.gw.rec = nopRec{}; a += run(conc, time.Second)
			s0 := fr.syncs.Load()
			fx.gw.rec = fr; st := time.Now(); x := run(conc, time.Second); b += x
			_ = st; _ = s0
		}
		fmt.Printf("conc=%d nop=%.0f file=%.0f ratio=%.2f\n", conc, a/3, b/3, b/a)
	}
}
