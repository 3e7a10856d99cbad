//! Full-text search with facets over the replicated catalog (tantivy, in memory).
//!
//! Title, description and keywords are indexed twice, with a German and an English stemmer, and
//! a query matches either. Filters (`theme`, `district`, `format`, `license`, `publisher`) are
//! exact. Facet counts cover every hit, not only the page. The index holds the latest entry of
//! every (publisher, dataset); withdrawn datasets are removed, and hits from publishers that are
//! not members of the current roster are hidden.

use std::collections::BTreeMap;
use std::sync::Mutex;

use allmende_protocol::PeerId;
use allmende_protocol::catalog::{EntryOp, SignedCatalogEntry};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::tokenizer::{
    Language, LowerCaser, NgramTokenizer, RemoveLongFilter, SimpleTokenizer, Stemmer, TextAnalyzer,
};
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument, Term};

/// Most hits a search considers (facets and pages are computed over these).
pub const MAX_HITS: usize = 10_000;

/// Errors of the search index.
#[derive(Debug, thiserror::Error)]
#[error("search index: {0}")]
pub struct SearchError(String);

impl From<tantivy::TantivyError> for SearchError {
    fn from(e: tantivy::TantivyError) -> Self {
        Self(e.to_string())
    }
}

/// A catalog search.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SearchQuery {
    /// Full-text query over title, description and keywords.
    pub q: Option<String>,
    /// EU data-theme code.
    pub theme: Option<String>,
    /// District key.
    pub district: Option<String>,
    /// Distribution format, e.g. `PARQUET`.
    pub format: Option<String>,
    /// DCAT-AP.de licence id.
    pub license: Option<String>,
    /// Publisher PeerId.
    pub publisher: Option<String>,
    /// Hits to skip.
    pub offset: Option<usize>,
    /// Hits per page (default 20, at most 100).
    pub limit: Option<usize>,
}

/// One hit.
#[derive(Clone, Debug, Serialize)]
pub struct Hit {
    /// The publishing member.
    pub publisher: String,
    /// Its organisation, from the roster.
    pub organisation: Option<String>,
    /// The dataset's DCAT-AP.de record.
    pub dataset: serde_json::Value,
    /// The entry's seq in the publisher's log.
    pub seq: u64,
    /// When the publisher issued the entry.
    pub issued: String,
    /// When this node received it (Unix seconds).
    pub received: u64,
    /// Relevance.
    pub score: f32,
}

/// A page of hits with facet counts over all hits.
#[derive(Clone, Debug, Serialize)]
pub struct SearchResult {
    /// Hits in total.
    pub total: usize,
    /// Offset of this page.
    pub offset: usize,
    /// This page.
    pub hits: Vec<Hit>,
    /// Counts per value, for `theme`, `district`, `format`, `license`, `publisher`.
    pub facets: BTreeMap<&'static str, BTreeMap<String, usize>>,
}

struct Fields {
    key: Field,
    text_de: Field,
    text_en: Field,
    text_ngram: Field,
    theme: Field,
    district: Field,
    format: Field,
    license: Field,
    publisher: Field,
    seq: Field,
    issued: Field,
    received: Field,
    record: Field,
}

/// The in-memory catalog index.
pub struct CatalogIndex {
    fields: Fields,
    index: Index,
    /// Serialises writers; a writer (and its 15 MB arena) exists only while applying.
    writing: Mutex<()>,
    reader: IndexReader,
}

impl std::fmt::Debug for CatalogIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CatalogIndex")
    }
}

fn stemmed(name: &str) -> TextOptions {
    TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(name)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    )
}

fn analyzer(language: Language) -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(Stemmer::new(language))
        .build()
}

impl CatalogIndex {
    /// An empty index.
    pub fn new() -> Result<Self, SearchError> {
        let mut b = Schema::builder();
        let fields = Fields {
            key: b.add_text_field("key", STRING),
            text_de: b.add_text_field("text_de", stemmed("de_stem")),
            text_en: b.add_text_field("text_en", stemmed("en_stem")),
            text_ngram: b.add_text_field("text_ngram", stemmed("ngram4")),
            theme: b.add_text_field("theme", STRING | STORED),
            district: b.add_text_field("district", STRING | STORED),
            format: b.add_text_field("format", STRING | STORED),
            license: b.add_text_field("license", STRING | STORED),
            publisher: b.add_text_field("publisher", STRING | STORED),
            seq: b.add_u64_field("seq", STORED),
            issued: b.add_text_field("issued", STORED),
            received: b.add_u64_field("received", STORED),
            record: b.add_text_field("record", STORED),
        };
        let index = Index::create_in_ram(b.build());
        index
            .tokenizers()
            .register("de_stem", analyzer(Language::German));
        index
            .tokenizers()
            .register("en_stem", analyzer(Language::English));
        // 4-grams find parts of German compounds: `zählung` in `Verkehrszählungen`.
        let ngram = NgramTokenizer::new(4, 4, false).map_err(SearchError::from)?;
        index.tokenizers().register(
            "ngram4",
            TextAnalyzer::builder(ngram).filter(LowerCaser).build(),
        );
        let reader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            fields,
            index,
            writing: Mutex::new(()),
            reader,
        })
    }

    /// Adds, replaces or (for a withdrawal) removes the dataset an entry describes.
    pub fn apply(&self, entries: &[(SignedCatalogEntry, u64)]) -> Result<(), SearchError> {
        let f = &self.fields;
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut writer: IndexWriter = self.index.writer_with_num_threads(1, 15_000_000)?;
        for (signed, received) in entries {
            let e = signed.payload();
            let key = format!("{}/{}", e.publisher, e.dataset.id);
            writer.delete_term(Term::from_field_text(f.key, &key));
            if e.op == EntryOp::Withdraw {
                continue;
            }
            let d = &e.dataset;
            let text = format!("{}\n{}\n{}", d.title, d.description, d.keywords.join(" "));
            let mut doc = TantivyDocument::default();
            doc.add_text(f.key, &key);
            doc.add_text(f.text_de, &text);
            doc.add_text(f.text_en, &text);
            doc.add_text(f.text_ngram, &text);
            for t in &d.themes {
                doc.add_text(f.theme, t);
            }
            if let Some(k) = &d.district_key {
                doc.add_text(f.district, k);
            }
            for dist in &d.distributions {
                doc.add_text(f.format, &dist.format);
            }
            if let Some(l) = &d.license {
                doc.add_text(f.license, l);
            }
            doc.add_text(f.publisher, e.publisher.to_string());
            doc.add_u64(f.seq, e.seq);
            doc.add_text(f.issued, &e.issued);
            doc.add_u64(f.received, *received);
            doc.add_text(f.record, serde_json::to_string(d).unwrap_or_default());
            writer.add_document(doc)?;
        }
        writer.commit()?;
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Searches; only hits whose publisher `visible` accepts are returned, and `organisation`
    /// names the publisher.
    pub fn search(
        &self,
        query: &SearchQuery,
        visible: &dyn Fn(&PeerId) -> Option<String>,
    ) -> Result<SearchResult, SearchError> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            let mut parser =
                QueryParser::for_index(&self.index, vec![f.text_de, f.text_en, f.text_ngram]);
            parser.set_field_boost(f.text_ngram, 0.3);
            parser.set_conjunction_by_default();
            let (parsed, _errors) = parser.parse_query_lenient(q);
            clauses.push((Occur::Must, parsed));
        }
        for (field, value) in [
            (f.theme, &query.theme),
            (f.district, &query.district),
            (f.format, &query.format),
            (f.license, &query.license),
            (f.publisher, &query.publisher),
        ] {
            if let Some(v) = value {
                let term = Term::from_field_text(field, v);
                clauses.push((
                    Occur::Must,
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                ));
            }
        }
        let combined: Box<dyn Query> = if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        };
        let searcher = self.reader.searcher();
        let top = searcher.search(&combined, &TopDocs::with_limit(MAX_HITS).order_by_score())?;
        let mut hits = Vec::new();
        let mut facets: BTreeMap<&'static str, BTreeMap<String, usize>> = BTreeMap::new();
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let all = |field: Field| -> Vec<String> {
                doc.get_all(field)
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            let publisher = text(f.publisher);
            let Some(organisation) = publisher.parse::<PeerId>().ok().and_then(|p| visible(&p))
            else {
                continue;
            };
            for (name, field) in [
                ("theme", f.theme),
                ("district", f.district),
                ("format", f.format),
                ("license", f.license),
                ("publisher", f.publisher),
            ] {
                let counts = facets.entry(name).or_default();
                let mut values = all(field);
                values.dedup();
                for v in values {
                    *counts.entry(v).or_default() += 1;
                }
            }
            hits.push(Hit {
                publisher,
                organisation: Some(organisation),
                dataset: serde_json::from_str(&text(f.record)).unwrap_or_default(),
                seq: doc
                    .get_first(f.seq)
                    .and_then(|v| v.as_u64())
                    .unwrap_or_default(),
                issued: text(f.issued),
                received: doc
                    .get_first(f.received)
                    .and_then(|v| v.as_u64())
                    .unwrap_or_default(),
                score,
            });
        }
        if query.q.as_deref().is_none_or(|q| q.trim().is_empty()) {
            hits.sort_by(|a, b| b.issued.cmp(&a.issued).then(a.publisher.cmp(&b.publisher)));
        }
        let total = hits.len();
        let offset = query.offset.unwrap_or(0).min(total);
        let limit = query.limit.unwrap_or(20).clamp(1, 100);
        let hits = hits.into_iter().skip(offset).take(limit).collect();
        Ok(SearchResult {
            total,
            offset,
            hits,
            facets,
        })
    }

    /// Number of indexed datasets (including hidden ones).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
