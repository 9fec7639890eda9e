package gateway
import ("testing";"context";"sync";"time";"path/filepath";"fmt";"os")
func TestZZRec(t *testing.T){
	if os.Getenv("ZZ")=="" { t.Skip() }
	for _, conc := range []int{1,2,4,16,64} {
		fr, _ := NewFileRecorder(filepath.Join(t.TempDir(), "a.jsonl"))
		var n int64; var mu sync.Mutex; var wg sync.WaitGroup
		st := time.Now()
		for i:=0;i<conc;i++{ wg.Go(func(){ for time.Since(st) < time.Second { fr.Record(context.Background(), &Event{Kind:KindGrant}); time.Sleep(100*time.Microsecond); mu.Lock(); n++; mu.Unlock() } }) }
		wg.Wait()
		fmt.Printf("conc=%d rate=%.0f per-sync=%.1f\n", conc, float64(n)/time.Since(st).Seconds(), float64(n)/float64(fr.syncs.Load()))
		fr.Close()
	}
}
