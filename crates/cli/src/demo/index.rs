//! A small embedded vector index: the specialists' retrieval step, with no model and no server.
//!
//! Documents and queries are embedded as hashed bag-of-words vectors (each lowercase word but a
//! few stopwords adds 1 to one of [`DIMENSIONS`] buckets, then the vector is normalised) and
//! ranked by cosine similarity. Crude, deterministic and instant: what matters here is the `retrieval` span the
//! search runs in, not the quality of the ranking.

/// Length of every embedding.
pub const DIMENSIONS: usize = 1024;

/// Words too common to tell documents apart.
const STOPWORDS: [&str; 12] =
    ["and", "are", "for", "the", "what", "where", "with", "from", "that", "this", "see", "out"];

/// The travel guide the demo's agents search.
const GUIDE: [&str; 12] = [
    "Zürich: the old town and the lake are walkable; trams cover the rest. Hotels are expensive.",
    "Zürich in winter: museums, fondue, and day trips to the mountains by train.",
    "Lisbon: trams, viewpoints and pastries; the hills are steep, wear good shoes.",
    "Lisbon on a budget: hostels in Baixa, the metro day pass, free museum Sundays.",
    "Kyoto: temples, gardens and tea houses; buses are crowded, rent a bicycle.",
    "Kyoto in autumn: the maples peak in November and hotels book out early.",
    "Oaxaca: markets, mezcal and mole; the old town is compact and safe to walk.",
    "Oaxaca day trips: Monte Albán ruins and the Hierve el Agua springs.",
    "Travel budgets: plan lodging at about half of the total, food a quarter.",
    "Currency: card payments are accepted almost everywhere; keep some cash for markets.",
    "Rail passes pay off for three or more long trips in a week.",
    "Weekend trips: arrive Friday evening, leave Sunday night, book refundable fares.",
];

/// What a specialist asks the index about a trip.
pub fn trip_query(city: &str) -> String {
    format!("{city}: what to see, where to stay, what it costs")
}

/// An in-memory index of documents and their embeddings.
#[derive(Debug, Clone)]
pub struct VectorIndex {
    docs: Vec<(&'static str, [f32; DIMENSIONS])>,
}

/// Embeds `text` as a normalised hashed bag of words.
pub fn embed(text: &str) -> [f32; DIMENSIONS] {
    let mut v = [0f32; DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2 && !STOPWORDS.contains(&w.to_lowercase().as_str()))
    {
        // FNV-1a: stable across runs and platforms, unlike the std hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        v[(h % DIMENSIONS as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

fn cosine(a: &[f32; DIMENSIONS], b: &[f32; DIMENSIONS]) -> f32 {
    // Both are normalised (or zero), so the dot product is the cosine.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl VectorIndex {
    /// The demo's travel guide, embedded.
    pub fn travel_guide() -> VectorIndex {
        VectorIndex { docs: GUIDE.iter().map(|d| (*d, embed(d))).collect() }
    }

    /// Name of the data source, as `gen_ai.data_source.id`.
    pub fn name(&self) -> &'static str {
        "travel-guide"
    }

    /// The `k` documents most similar to `query`, best first, with their scores.
    pub fn search(&self, query: &str, k: usize) -> Vec<(f32, &'static str)> {
        let q = embed(query);
        let mut scored: Vec<(f32, &'static str)> = self.docs.iter().map(|(d, v)| (cosine(&q, v), *d)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.truncate(k);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_city_asked_for_ranks_first() {
        let index = VectorIndex::travel_guide();
        for city in ["Lisbon", "Kyoto", "Oaxaca", "Zürich"] {
            let hits = index.search(&trip_query(city), 2);
            assert!(hits[0].1.starts_with(city), "{city}: {hits:?}");
        }
    }

    #[test]
    fn empty_text_embeds_to_zero_and_scores_zero() {
        assert!(embed("").iter().all(|x| *x == 0.0));
        assert_eq!(VectorIndex::travel_guide().search("", 1)[0].0, 0.0);
    }
}
