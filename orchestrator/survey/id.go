package survey

import (
	"encoding/json"
	"strconv"
)

// ID is a cluster or member ID. It is printed in hex, as etcdctl prints
// IDs, and so is it in JSON, where a number above 2^53 would lose
// precision in most readers; etcd's own records (numbers) are read too.
type ID uint64

func (id ID) String() string { return strconv.FormatUint(uint64(id), 16) }

// MarshalJSON writes the ID as a hex string.
func (id ID) MarshalJSON() ([]byte, error) { return json.Marshal(id.String()) }

// UnmarshalJSON reads a hex string or a number (etcd's member records).
func (id *ID) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		v, err := strconv.ParseUint(s, 16, 64)
		*id = ID(v)
		return err
	}
	var n uint64
	err := json.Unmarshal(b, &n)
	*id = ID(n)
	return err
}
